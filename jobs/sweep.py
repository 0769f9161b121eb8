"""Launch and follow sweeps: ``hpcars-sweep submit|status``.

    hpcars-sweep submit jobs/examples/regression.toml            # a fresh sweep directory
    hpcars-sweep submit SPEC --sweep-dir sweeps/NAME-...         # re-submit: skip done, resume the rest
    hpcars-sweep submit SPEC --executor local                    # no Slurm: local processes
    hpcars-sweep submit SPEC --dry-run                           # print each run's command; submit nothing
    hpcars-sweep status sweeps/NAME-...

A sweep directory holds ``sweep.json`` (the spec, each run's name and hpcars.train
options, and every submission's job ids), ``runs/RUN_NAME/`` (one hpcars run
directory per task) and ``submitit/N/`` (a fresh submitit folder per submission: a
reused folder could hand back an old result). A re-submission skips done runs and
resumes the others from their checkpoints; a run stopped before its first checkpoint
has nothing to resume from, so its directory is moved to ``set-aside/RUN_NAME.K``
(never deleted) and the run starts again.
All runs of a submission go to Slurm as one job array (``slurm_array_parallelism``
tasks at a time); each task is one multi-rank MPI run started by ``srun --mpi=...``
(never mpirun inside a task) and is requeued from its checkpoint on preemption.
The local executor runs each run as one process (one rank): by world-size
invariance its parameters are the same as with more ranks.

Before anything is queued, ``submit`` refuses (one line, exit status 2):

* a spec whose runs differ from those of the sweep directory it re-submits into
  (runs added or removed, or a run's options changed): such a sweep needs a fresh
  directory. ``[resources]`` may change between submissions (e.g. a longer
  ``timeout_min``). A ``sweep.json`` from before options were recorded is checked on
  the run names only;
* a task that every run naming it would refuse at start: an unregistered Gymnasium
  id, or a plug-in ``module:factory`` whose module does not exist.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcars.errors import PathProblem
from hpcars.run import checkpoint
from hpcars.run.output import SUMMARY_FILE, write_json_atomic
from hpcars.run.paths import read_text, writable_directory

from .spec import EXAMPLE_DIR, RunSpec, SpecError, SweepSpec, load, spec_file

SWEEP_FILE = "sweep.json"
SET_ASIDE = "set-aside"  # run directories a re-submission could not resume, kept
#: scheduler states of a job that may still write its run directory
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "SUSPENDED", "CONFIGURING", "COMPLETING", "RESIZING")
EXAMPLES = tuple(sorted(p.stem for p in EXAMPLE_DIR.glob("*.toml")))
EXECUTORS = ("slurm", "local")


def run_state(run_dir: Path) -> dict[str, Any]:
    """What a run directory says about its run: done, partial (iteration) or not started."""
    summary = run_dir / SUMMARY_FILE
    if summary.exists():
        info = json.loads(summary.read_text())
        return {"state": "done", "iteration": info["iterations"], "score": info["final"].get("score")}
    latest = checkpoint.latest(run_dir)
    if latest is None:
        return {"state": "not started", "iteration": 0, "score": None}
    try:
        ckpt = checkpoint.read(latest)
    except checkpoint.CheckpointError:
        return {"state": "unreadable checkpoint", "iteration": None, "score": None}
    scores = [float(v) for v in ckpt.metrics.get("score", []) if v == v]  # the last evaluation so far
    return {"state": "partial", "iteration": ckpt.iteration, "score": scores[-1] if scores else None}


def started_without_checkpoint(run_dir: Path, state: str) -> bool:
    """A run (in ``run_state`` ``state``) that wrote files but was stopped before its first
    checkpoint (e.g. killed by a cancelled job): hpcars.train refuses such a directory, it has
    nothing to resume from."""
    return state == "not started" and run_dir.is_dir() and any(run_dir.iterdir())


def set_aside(sweep_dir: Path, run_dir: Path) -> Path:
    """Move an unresumable run directory to ``SWEEP_DIR/set-aside/`` (nothing deleted), so the
    run starts afresh in its own place; returns where it went."""
    shelf = sweep_dir / SET_ASIDE
    shelf.mkdir(exist_ok=True)
    number = 1
    while (shelf / f"{run_dir.name}.{number}").exists():
        number += 1
    target = shelf / f"{run_dir.name}.{number}"
    try:
        run_dir.rename(target)
    except OSError as err:
        raise SpecError(f"--sweep-dir: cannot move {run_dir} to {target}: {err.strerror}") from None
    return target


def make_executor(kind: str, folder: Path, spec: SweepSpec):
    import submitit

    res = spec.resources
    executor = submitit.AutoExecutor(folder=folder, cluster=None if kind == "slurm" else "local")
    executor.update_parameters(timeout_min=res.timeout_min, name=f"hpcars-{spec.name}")
    if kind == "slurm":
        extra: dict[str, Any] = {}
        if res.gpus_per_task:
            extra["gpus_per_task"] = res.gpus_per_task
        executor.update_parameters(
            nodes=res.nodes,
            tasks_per_node=res.tasks_per_node,
            cpus_per_task=res.cpus_per_task,
            slurm_array_parallelism=res.array_parallelism,
            # one dead rank ends the step instead of leaving the others in a collective
            slurm_srun_args=[f"--mpi={res.mpi}", "--kill-on-bad-exit=1"],
            slurm_signal_delay_s=res.signal_delay_s,
            slurm_additional_parameters=extra,
            **({"slurm_partition": res.partition} if res.partition else {}),
            **({"mem_gb": res.mem_gb} if res.mem_gb else {}),
        )
    else:
        executor.update_parameters(tasks_per_node=1, nodes=1)
    return executor


def fresh_sweep_dir(spec: SweepSpec) -> Path:
    sweep_dir = Path("sweeps") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if sweep_dir.exists():
        raise SpecError(f"{sweep_dir} exists; wait a second or pass --sweep-dir")
    return sweep_dir


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _option_changes(old: list[str], new: list[str]) -> str:
    """``--iterations 120 -> 200, --shift (unset) -> 1``: how two option lists (``--key value`` pairs) differ."""
    before, after = dict(zip(old[::2], old[1::2], strict=True)), dict(zip(new[::2], new[1::2], strict=True))
    keys = [*before, *(k for k in after if k not in before)]
    return ", ".join(
        f"{k} {before.get(k, '(unset)')} -> {after.get(k, '(unset)')}" for k in keys if before.get(k) != after.get(k)
    )


def spec_difference(record: dict[str, Any], runs: dict[str, list[str]]) -> str:
    """How the runs of a spec (name -> options) differ from those recorded in ``sweep.json``; '' if not."""
    old_names = list(record["runs"])
    parts = []
    added = [name for name in runs if name not in old_names]
    removed = [name for name in old_names if name not in runs]
    if added:
        parts.append(f"runs added: {_some(added)}")
    if removed:
        parts.append(f"runs removed: {_some(removed)}")
    recorded = record.get("argv")  # absent in sweep.json files written before options were recorded
    if recorded is not None:
        changed = [name for name in runs if name in recorded and recorded[name] != runs[name]]
        if changed:
            first = changed[0]
            how = _option_changes(recorded[first], runs[first])
            parts.append(f"options changed in {len(changed)} run(s), e.g. {first}: {how}")
    return "; ".join(parts)


def existing_record(sweep_dir: Path, runs: dict[str, list[str]]) -> dict[str, Any] | None:
    """The sweep directory's ``sweep.json`` (None for a new sweep); ``SpecError`` if it is of another spec."""
    if not (sweep_dir / SWEEP_FILE).exists():
        return None
    record = read_record(sweep_dir)
    difference = spec_difference(record, runs)
    if difference:
        raise SpecError(
            f"--sweep-dir: {sweep_dir} holds a sweep of another spec ({difference}); "
            f"re-submit it with its own spec ({record.get('spec')}), or leave out --sweep-dir for a fresh directory"
        )
    return record


def print_plan(
    sweep_dir: Path, kind: str, todo: list[tuple[RunSpec, Path]], done: list[RunSpec], stalled: set[str]
) -> None:
    """``--dry-run``: each run and the hpcars.train command it would run."""
    print(f"sweep {sweep_dir} (dry run, nothing submitted or written): {len(todo)} run(s) to submit ({kind})")
    for run, run_dir in todo:
        if run.name in stalled:
            print(f"{run.name}: started before but has no checkpoint: its directory goes to {SET_ASIDE}/")
        print(f"{run.name}: python -m hpcars.train {shlex.join(run.argv(run_dir))}")
    for run in done:
        print(f"{run.name}: done, skipped")


def submit(spec_path: Path, sweep_dir: Path | None, kind: str, dry_run: bool = False) -> Path:
    """Submit the spec's runs that are not done; with ``dry_run``, print them and touch nothing."""
    spec = load(spec_path)
    spec.check_tasks()
    runs = {run.name: run.options_argv() for run in spec.runs()}
    sweep_dir = fresh_sweep_dir(spec) if sweep_dir is None else sweep_dir
    record = existing_record(sweep_dir, runs)
    todo, done, stalled = [], [], []  # stalled: started, stopped before a first checkpoint
    for run in spec.runs():
        run_dir = sweep_dir / "runs" / run.name
        state = run_state(run_dir)["state"]
        if state == "done":
            done.append(run)
        else:
            todo.append((run, run_dir))
            stalled += [(run, run_dir)] if started_without_checkpoint(run_dir, state) else []
    if dry_run:
        print_plan(sweep_dir, kind, todo, done, {run.name for run, _ in stalled})
        return sweep_dir
    try:
        writable_directory(sweep_dir)  # before anything is submitted
    except PathProblem as err:
        raise SpecError(f"--sweep-dir: {err}") from None
    if record is None:
        record = {"name": spec.name, "spec": str(spec_file(spec_path).resolve()), "runs": list(runs), "submissions": []}
    record["argv"] = runs  # the same as recorded, or recorded now for an older sweep.json
    states = job_states(record) if stalled else {}
    for run, run_dir in stalled:
        state = states.get(run.name, "")
        # A job still at it, or a scheduler that cannot say: never move a directory from under it.
        if state.split(" ")[0] in (*ACTIVE_STATES, "unreachable"):
            print(f"{run.name}: started before, no checkpoint yet, its job is {state}: left in place")
        else:
            print(f"{run.name}: started before but has no checkpoint: set aside as {set_aside(sweep_dir, run_dir)}")
    folder = sweep_dir / "submitit" / str(len(record["submissions"]))
    jobs = submit_runs(kind, folder, spec, todo)
    record["submissions"].append({"executor": kind, "folder": str(folder), "jobs": jobs, "time": time.time()})
    write_json_atomic(sweep_dir / SWEEP_FILE, record)
    print(f"sweep {sweep_dir}: submitted {len(todo)} run(s) ({kind}), {len(done)} already done")
    return sweep_dir


def submit_runs(kind: str, folder: Path, spec: SweepSpec, todo: list[tuple[RunSpec, Path]]) -> dict[str, str]:
    """Queue the runs as one job array; their job ids by run name."""
    from hpcars.jobs.job import TrainJob

    if not todo:
        return {}
    executor = make_executor(kind, folder, spec)
    with executor.batch():
        submitted = [(run.name, executor.submit(TrainJob(run.argv(run_dir)))) for run, run_dir in todo]
    return {name: job.job_id for name, job in submitted}


def slurm_reachable() -> bool:
    """Whether ``sacct`` answers here (it needs a Slurm configuration and a controller)."""
    try:
        probe = subprocess.run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def job_states(record: dict[str, Any]) -> dict[str, str]:
    """The scheduler's state of each run's latest job (slurm or local); earlier jobs of a
    re-submitted run are not asked about.

    Where no Slurm answers (a login node of another cluster, a laptop with the sweep
    copied over), Slurm jobs read ``unreachable`` rather than asking sacct once per job.
    """
    import submitit

    latest = {name: (sub, job_id) for sub in record["submissions"] for name, job_id in sub["jobs"].items()}
    slurm = any(sub["executor"] == "slurm" for sub, _ in latest.values())
    reachable = not slurm or slurm_reachable()
    states: dict[str, str] = {}
    for name, (sub, job_id) in latest.items():
        if sub["executor"] == "slurm" and not reachable:
            states[name] = "unreachable"
            continue
        job_class = submitit.SlurmJob if sub["executor"] == "slurm" else submitit.LocalJob
        try:
            states[name] = job_class(folder=sub["folder"], job_id=job_id).state
        except Exception as err:  # a scheduler that no longer knows the job
            states[name] = f"unknown ({type(err).__name__})"
    return states


def read_record(sweep_dir: Path) -> dict[str, Any]:
    """A sweep directory's ``sweep.json``; ``SpecError`` if it is missing or unreadable."""
    record_path = sweep_dir / SWEEP_FILE
    try:
        record = json.loads(read_text(record_path))
    except PathProblem:
        raise SpecError(f"{sweep_dir}: not a sweep directory (no readable {SWEEP_FILE})") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"{record_path}: not valid JSON ({err})") from None
    if not (isinstance(record, dict) and isinstance(record.get("runs"), list) and "submissions" in record):
        raise SpecError(f"{record_path}: not a sweep record (needs the keys runs and submissions)")
    return record


def status(sweep_dir: Path) -> list[dict[str, Any]]:
    record = read_record(sweep_dir)
    scheduler = job_states(record)
    rows = []
    for name in record["runs"]:
        row = {"run": name, **run_state(sweep_dir / "runs" / name), "job": scheduler.get(name, "-")}
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcars-sweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_submit = sub.add_parser("submit", help="submit a sweep (or re-submit its unfinished runs)")
    p_submit.add_argument(
        "spec", type=Path, help=f"sweep spec: a TOML file, or the name of a packaged example ({', '.join(EXAMPLES)})"
    )
    p_submit.add_argument(
        "--sweep-dir",
        type=Path,
        default=None,
        help="existing sweep directory to re-submit into: its done runs are skipped, the rest resume; "
        "the spec's runs must be those it was made with (default: a fresh sweeps/NAME-TIME)",
    )
    p_submit.add_argument("--executor", choices=EXECUTORS, default="slurm", help="where runs execute (default: slurm)")
    p_submit.add_argument(
        "--dry-run",
        action="store_true",
        help="check the spec, print each run to submit and its hpcars.train command; submit and write nothing",
    )
    p_status = sub.add_parser("status", help="state of every run of a sweep")
    p_status.add_argument("sweep_dir", type=Path)
    p_status.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "submit":
            submit(args.spec, args.sweep_dir, args.executor, args.dry_run)
            return 0
        rows = status(args.sweep_dir)
    except SpecError as err:
        print(f"hpcars-sweep: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"sweep": str(args.sweep_dir), "runs": rows}))
        return 0
    width = max(len(r["run"]) for r in rows)
    for r in rows:
        score = "" if r["score"] is None else f"score {r['score']:.4g}"
        print(f"{r['run']:{width}s}  {r['state']:12s} iteration {r['iteration']!s:>6}  job {r['job']:10s} {score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
