"""``python -m hpcars.inspect RUN_DIR_OR_CHECKPOINT [--json]``: what a run holds.

Reads the latest checkpoint of a run directory (or the given checkpoint file) and
the live ``metrics.csv``: config, counters, world-size history, the best and last
rewards and scores, the population, ``params_sha256`` (recomputed from the
stored parameters of every member, in member order, and checked against the
recorded value), and the provenance: the software the checkpoint was written with
(``hpcars.run.provenance``; before the first checkpoint, ``config.json``'s), with the
versions that differ from this installation's. ``--json`` prints the same as one
JSON object for scripts. Works while the job is running.
A missing, truncated, corrupt, foreign or newer file is a one-line error with exit
status 2; nothing is modified.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hpcars.errors import CheckpointError
from hpcars.run import checkpoint
from hpcars.run.output import CONFIG_FILE, METRICS_FILE
from hpcars.run.provenance import MACHINE, differences, machine_differences, versions
from hpcars.threads import pin_threads


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def live_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.csv`` as written so far (the file grows while the job runs)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _config_provenance(run_dir: Path) -> dict[str, str | None] | None:
    """The ``provenance`` block of the run's ``config.json`` (None: no file, or none recorded)."""
    try:
        provenance = json.loads((run_dir / CONFIG_FILE).read_text()).get("provenance")
    except (OSError, ValueError, AttributeError):
        return None
    return provenance if isinstance(provenance, dict) else None


def describe_provenance(provenance: dict[str, str | None] | None) -> str:
    """One line: ``hpcars 0.1.0 (commit …)  python …  torch …`` (the software recorded and not None)."""
    if not provenance:
        return "not recorded"
    parts = []
    for name, value in provenance.items():
        if value is None or name == "git_commit" or name in MACHINE:
            continue
        if name == "hpcars" and provenance.get("git_commit"):
            value = f"{value} (commit {provenance['git_commit']})"
        parts.append(f"{'MPI library' if name == 'mpi_library' else name} {value}")
    return "  ".join(parts)


def describe_machine(provenance: dict[str, str | None] | None) -> str:
    """One line: ``cpu AuthenticAMD AMD EPYC  cpu capability AVX512  BLAS mkl 2024.2  GPU …``."""
    labels = {"cpu": "cpu", "cpu_capability": "cpu capability", "blas": "BLAS", "gpu": "GPU"}
    parts = [f"{labels[name]} {provenance[name]}" for name in MACHINE if provenance and provenance.get(name)]
    return "  ".join(parts) or "not recorded"


def _best(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return max(values) if values else None


def _async_summary(log: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Updates sequenced, applied and dropped, and the staleness histogram (staleness -> count)."""
    if not log:
        return None
    values, counts = np.unique(log["staleness"], return_counts=True)
    return {
        "updates": int(len(log["seq"])),
        "applied": int(log["applied"].sum()),
        "dropped": int((~log["applied"]).sum()),
        "sources": sorted({int(s) for s in log["source"]}),
        "staleness_histogram": {int(v): int(c) for v, c in zip(values, counts, strict=True)},
    }


def _population_summary(ckpt: checkpoint.Checkpoint) -> dict[str, Any]:
    """Members, their fitness, and what the operators did (clonings, annealing's verdicts)."""
    pop = ckpt.population or {}
    fitness = np.array([m.fitness for m in ckpt.members])
    seen = np.isfinite(fitness).any()
    return {
        "members": len(ckpt.members),
        "fitness_max": float(np.nanmax(fitness)) if seen else None,
        "fitness_median": float(np.nanmedian(fitness)) if seen else None,
        "clonings": int(len(pop["lineage"])) if "lineage" in pop else 0,
        "sa_accepted": int(pop["accepted"].sum()) if "accepted" in pop else 0,
        "sa_rejected": int(pop["rejected"].sum()) if "rejected" in pop else 0,
    }


def read_run(target: Path) -> dict[str, Any]:
    """The summary of a run directory or checkpoint file."""
    path = checkpoint.locate(target)
    if path is None:
        rows = live_metrics(target)
        if not rows:
            raise CheckpointError(f"{target}: no checkpoint and no metrics here (is it a run directory?)")
        # a run still before its first checkpoint: what metrics.csv says so far
        return {
            "checkpoint": None,
            "iteration": rows[-1].get("iteration"),
            "metrics_rows": len(rows),
            "best_reward_mean": _best(rows, "reward_mean"),
            "best_score": _best(rows, "score"),
            "metrics": rows[-1],
            "provenance": _config_provenance(target),
        }
    run_dir = path.parent.parent if path.parent.name == checkpoint.DIRECTORY else path.parent
    try:
        ckpt = checkpoint.read(path)
    except checkpoint.HistoryUnavailable:  # a file copied out of its run: parameters and counters only
        ckpt = checkpoint.read(path, tables=False)
    flat = np.stack(
        [np.concatenate([np.asarray(v, dtype="<f4").reshape(-1) for v in m.params.values()]) for m in ckpt.members]
    )
    sha = checkpoint.params_sha256(flat)
    rows = live_metrics(run_dir)
    return {
        "checkpoint": str(path),
        "iteration": ckpt.iteration,
        "episodes": ckpt.total_episodes,
        "samples": ckpt.total_samples,
        "skipped_steps": ckpt.skipped_steps,
        "elapsed_s": round(ckpt.elapsed_s, 3),
        "world_size": ckpt.world_sizes[-1][1] if ckpt.world_sizes else None,
        "world_sizes": ckpt.world_sizes,
        "params_sha256": sha,
        "sha256_ok": sha == ckpt.params_sha256,
        "parameters": int(flat.shape[1]),
        "population": _population_summary(ckpt),
        "reached_target": ckpt.reached_target,
        "init_from": ckpt.init_from,
        "search_space": ckpt.search_space_info,
        "schedule": ckpt.config.get("schedule", "static"),
        "best": None
        if ckpt.best is None
        else {"iteration": ckpt.best.iteration, "score": ckpt.best.score, "spread": ckpt.best.spread},
        "async_log": _async_summary(ckpt.async_log),
        "task_state": sorted(ckpt.task_state),
        "best_reward_mean": _best(rows, "reward_mean"),
        "best_score": _best(rows, "score"),
        "metrics_rows": len(rows),
        "metrics": rows[-1] if rows else {},
        "config": ckpt.config,
        "provenance": ckpt.provenance,
    }


def _print_provenance(provenance: dict[str, str | None] | None) -> None:
    now = versions()
    print(f"software: {describe_provenance(provenance)}")
    changed = differences(provenance, now)
    if changed:
        print(f"  differs from this installation: {'; '.join(changed)}")
    print(f"machine: {describe_machine(provenance)}")
    other = machine_differences(provenance, now)
    if other:
        print(f"  differs from this machine ({'; '.join(other)}): a resume here need not match its bits")


def _print_checkpoint(info: dict[str, Any]) -> None:
    """The text form of ``read_run``'s summary of a checkpoint."""
    cfg = info["config"]
    print(
        f"run: task {cfg['task']}  seed {cfg['seed']}  variant {cfg['variant']}  N={cfg['directions']}  "
        f"b={cfg['top_directions'] or cfg['directions']}  α={cfg['step_size']}  ν={cfg['noise_std']}"
    )
    print(f"checkpoint {info['checkpoint']}")
    print(
        f"iteration {info['iteration']}  episodes {info['episodes']}  samples {info['samples']}  "
        f"{info['elapsed_s']} s  world sizes {info['world_sizes']}"
    )
    print(
        f"params_sha256 {info['params_sha256']}  ({'matches' if info['sha256_ok'] else 'DOES NOT MATCH'} "
        f"the record)  {info['parameters']} parameters  {info['population']['members']} member(s)"
    )
    print(
        f"best score {info['best_score']}  best mean reward {info['best_reward_mean']}  "
        f"target reached: {info['reached_target']}"
    )
    if info["best"]:
        b = info["best"]
        print(
            f"best evaluation: score {b['score']:.6g} (spread {b['spread']:.4g}) at iteration {b['iteration']}; "
            "play it: python -m hpcars.play RUN_DIR --which best"
        )
    print(f"schedule {info['schedule']}")
    _print_provenance(info["provenance"])
    if info["async_log"]:
        a = info["async_log"]
        print(
            f"async update log: {a['updates']} updates from ranks {a['sources']}, {a['applied']} applied, "
            f"{a['dropped']} dropped; staleness histogram {a['staleness_histogram']}"
        )
    space = info["search_space"]
    if space and space["kind"] != "full":
        details = ", ".join(f"{k} {v}" for k, v in space.items() if k != "kind")
        print(f"search space {space['kind']}: {details}")
    if info["init_from"]:
        init = info["init_from"]
        print(f"init from {init['path']} (sha256 {init['file_sha256'][:12]}): θ₀ params_sha256 {init['params_sha256']}")


def main(argv: Sequence[str] | None = None) -> int:
    pin_threads()
    parser = argparse.ArgumentParser(prog="python -m hpcars.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a run directory or one of its checkpoint files")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        info = read_run(Path(args.target))
    except CheckpointError as err:
        print(f"hpcars.inspect: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
        return 0
    if info["checkpoint"] is None:
        print(f"no checkpoint yet; metrics.csv has {info['metrics_rows']} rows")
        _print_provenance(info["provenance"])
    else:
        _print_checkpoint(info)
    for key, value in info["metrics"].items():
        print(f"  {key:16s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
