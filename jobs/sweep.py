"""Launch and follow sweeps: ``hpcars-sweep submit|status``.

    hpcars-sweep submit jobs/examples/regression.toml            # a fresh sweep directory
    hpcars-sweep submit SPEC --sweep-dir sweeps/NAME-...         # re-submit: skip done, resume the rest
    hpcars-sweep submit SPEC --executor local                    # no Slurm: local processes
    hpcars-sweep status sweeps/NAME-...

A sweep directory holds ``sweep.json`` (the spec and every submission's job ids),
``runs/RUN_NAME/`` (one hpcars run directory per task) and ``submitit/N/`` (a fresh
submitit folder per submission: a reused folder could hand back an old result).
All runs of a submission go to Slurm as one job array (``slurm_array_parallelism``
tasks at a time); each task is one multi-rank MPI run started by ``srun --mpi=...``
(never mpirun inside a task) and is requeued from its checkpoint on preemption.
The local executor runs each run as one process (one rank): by world-size
invariance its parameters are the same as with more ranks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcars import checkpoint
from hpcars.output import SUMMARY_FILE, write_json_atomic
from hpcars.paths import PathProblem, read_text, writable_directory

from .spec import SpecError, SweepSpec, load

SWEEP_FILE = "sweep.json"
EXAMPLE_DIR = Path(__file__).parent / "examples"
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


def submit(spec_path: Path, sweep_dir: Path | None, kind: str) -> Path:
    from hpcars.job import TrainJob

    spec = load(spec_path)
    if sweep_dir is None:
        sweep_dir = Path("sweeps") / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if sweep_dir.exists():
            raise SpecError(f"{sweep_dir} exists; wait a second or pass --sweep-dir")
    try:
        writable_directory(sweep_dir)  # before anything is submitted
    except PathProblem as err:
        raise SpecError(f"--sweep-dir: {err}") from None
    record_path = sweep_dir / SWEEP_FILE
    record: dict[str, Any] = (
        read_record(sweep_dir)
        if record_path.exists()
        else {"name": spec.name, "spec": str(spec_path), "runs": [r.name for r in spec.runs()], "submissions": []}
    )
    todo, skipped = [], []
    for run in spec.runs():
        run_dir = sweep_dir / "runs" / run.name
        (skipped if run_state(run_dir)["state"] == "done" else todo).append((run, run_dir))
    folder = sweep_dir / "submitit" / str(len(record["submissions"]))
    jobs: dict[str, str] = {}
    if todo:
        executor = make_executor(kind, folder, spec)
        with executor.batch():
            submitted = [(run.name, executor.submit(TrainJob(run.argv(run_dir)))) for run, run_dir in todo]
        jobs = {name: job.job_id for name, job in submitted}
    record["submissions"].append({"executor": kind, "folder": str(folder), "jobs": jobs, "time": time.time()})
    write_json_atomic(record_path, record)
    print(f"sweep {sweep_dir}: submitted {len(todo)} run(s) ({kind}), {len(skipped)} already done")
    return sweep_dir


def job_states(record: dict[str, Any]) -> dict[str, str]:
    """The scheduler's state of each run's latest job (slurm or local)."""
    import submitit

    states: dict[str, str] = {}
    for sub in record["submissions"]:
        for name, job_id in sub["jobs"].items():
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
        return json.loads(read_text(record_path))
    except PathProblem:
        raise SpecError(f"{sweep_dir}: not a sweep directory (no readable {SWEEP_FILE})") from None
    except json.JSONDecodeError as err:
        raise SpecError(f"{record_path}: not valid JSON ({err})") from None


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
        help="existing sweep directory to re-submit into (default: a fresh sweeps/NAME-TIME)",
    )
    p_submit.add_argument("--executor", choices=EXECUTORS, default="slurm", help="where runs execute (default: slurm)")
    p_status = sub.add_parser("status", help="state of every run of a sweep")
    p_status.add_argument("sweep_dir", type=Path)
    p_status.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    try:
        if args.command == "submit":
            submit(args.spec, args.sweep_dir, args.executor)
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
