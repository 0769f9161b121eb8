"""What low-rank perturbations cost in samples: lowrank vs dense at equal evaluations.

    python bench/lowrank_samples.py [--tasks digits wide halfcheetah] [--seeds 3000 3001 3002 3003 3004]
                                    [--arms dense lowrank:1 lowrank:4] [--jobs 2] [--smoke]

Each (task, arm, seed) is one ``python -m hpcars.train`` run (one rank, one thread; ``--jobs``
at a time). The arms differ only in ``--perturbation``/``--perturbation-rank``: the same N,
b, α, ν, iterations and seeds, so every arm spends the same branch evaluations. α and ν are
the same for every arm and were chosen for dense, which favours dense if anything; the seeds
that judge (3000–3004 by default) were never used to choose anything:

* ``digits``: the built-in digits MLP 64-32-10 (2.4·10³ parameters), N = 16, b = 8, 300
  iterations, the defaults α = 0.02, ν = 0.03;
* ``wide``: ``examples.wide_regression`` at ``--hidden 1000`` (1.04·10⁶ parameters), N = 8,
  150 iterations, mini-batches of 256; α = 0.003, ν = 0.003, tuned for dense on seed 100
  (80 iterations, α ∈ {0.001, 0.003, 0.01} × ν ∈ {0.001, 0.003, 0.01}: the defaults diverge
  at this size, the step growing with √P);
* ``halfcheetah``: HalfCheetah-v5, the paper's V2-t settings (``--preset halfcheetah``: α = 0.02,
  ν = 0.03, b = 4) with a tanh MLP policy 17-32-32-6 (1,830 parameters), N = 16, 40
  iterations (1,280 episodes).

Per task and arm: the final held-out score (median and range over seeds), and the branch
evaluations each seed took to reach the target — 90 % of the dense arm's median improvement
over the initial model (medians over dense's seeds of their initial and best scores) — with
the ratio of medians to dense's (the issue's goal: ≤ 1.5). Last line: one
JSON object. ``--smoke``: digits only, one seed, 4 iterations — seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    "digits": ["--task", "digits", "--hidden", "32", "--directions", "16", "--top-directions", "8"]
    + ["--iterations", "300", "--eval-every", "10"],
    "wide": ["--task", "examples.wide_regression:problem", "--hidden", "1000", "--directions", "8"]
    + ["--step-size", "0.003", "--noise-std", "0.003", "--iterations", "150", "--eval-every", "10"],
    "halfcheetah": ["--preset", "halfcheetah", "--policy", "mlp", "--hidden", "32", "--directions", "16"]
    + ["--iterations", "40", "--eval-every", "5", "--eval-episodes", "5", "--stop-at-target", "false"],
}
SMOKE = dict(tasks=["digits"], seeds=[3000], iterations=4)
TARGET_SHARE = 0.9  # of dense's median improvement: the score every arm is timed to


def arm_options(arm: str) -> list[str]:
    """``dense`` or ``lowrank:R``."""
    if arm == "dense":
        return ["--perturbation", "dense"]
    return ["--perturbation", "lowrank", "--perturbation-rank", arm.split(":")[1]]


def run(task: str, arm: str, seed: int, out: Path, iterations: int | None, extra: list[str]) -> dict:
    """One training run; its evaluations as (branch evaluations, score) pairs."""
    run_dir = out / f"{task}-{arm.replace(':', '')}-{seed}"
    options = [*TASKS[task], *extra, *arm_options(arm), "--seed", str(seed), "--run-dir", str(run_dir), "--quiet"]
    if iterations:
        options += ["--iterations", str(iterations)]
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hpcars.train", *options],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{task} {arm} seed {seed} failed: {done.stderr.strip()[-400:]}")
    config = json.loads((run_dir / "config.json").read_text())
    initial = json.loads((run_dir / "summary.json").read_text())["initial"]["score"]
    branches = 2 * config["directions"]
    with open(run_dir / "metrics.csv") as f:
        curve = [(int(r["iteration"]) * branches, float(r["score"])) for r in csv.DictReader(f) if r["score"]]
    return dict(task=task, arm=arm, seed=seed, curve=[(0, initial), *curve], wall_s=time.perf_counter() - start)


def first_reaching(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((evaluations for evaluations, score in curve if score >= target), None)


def summarise(runs: list[dict], task: str, arms: list[str]) -> list[dict]:
    """Final scores, and evaluations to 90 % of the dense arm's median improvement: the target
    is initial + 0.9 (best − initial), medians over the dense seeds of their initial and best scores."""
    dense = [r for r in runs if r["task"] == task and r["arm"] == "dense"]
    initial = statistics.median(r["curve"][0][1] for r in dense)
    best = statistics.median(max(score for _, score in r["curve"]) for r in dense)
    target = initial + TARGET_SHARE * (best - initial)
    rows = []
    for arm in arms:
        mine = [r for r in runs if r["task"] == task and r["arm"] == arm]
        finals = [r["curve"][-1][1] for r in mine]
        reached = [first_reaching(r["curve"], target) for r in mine]
        hits = sorted(e for e in reached if e is not None)
        # the median over seeds, an unreached seed counting as more than the budget
        median = statistics.median(hits + [float("inf")] * (len(reached) - len(hits)))
        rows.append(
            dict(
                task=task,
                arm=arm,
                seeds=len(mine),
                final_median=statistics.median(finals),
                final_min=min(finals),
                final_max=max(finals),
                target=target,
                reached=len(hits),
                evaluations_median=None if median == float("inf") else median,
                wall_s=statistics.median(r["wall_s"] for r in mine),
            )
        )
    base = rows[0]["evaluations_median"]
    for row in rows:
        mine = row["evaluations_median"]
        row["evaluations_ratio"] = mine / base if mine is not None and base else None
    return rows


def line(row: dict) -> str:
    ratio = "n/a" if row["evaluations_ratio"] is None else f"{row['evaluations_ratio']:.2f}"
    evals = "not reached" if row["evaluations_median"] is None else f"{row['evaluations_median']:,.0f}"
    return (
        f"{row['task']:<12} {row['arm']:<10} final {row['final_median']:10.4g} "
        f"[{row['final_min']:.4g}, {row['final_max']:.4g}]  target {row['target']:.4g}: "
        f"reached {row['reached']}/{row['seeds']}, median {evals} evaluations (x{ratio} dense)  "
        f"wall {row['wall_s']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3000, 3001, 3002, 3003, 3004], help="run seeds")
    parser.add_argument("--arms", nargs="+", default=["dense", "lowrank:1", "lowrank:4"], help="dense, lowrank:R")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--iterations", type=int, default=0, help="override every task's iterations (0 = its own)")
    parser.add_argument("--options", default="", help="more hpcars.train options for every run (tuning)")
    args = common.parse(parser, SMOKE)
    if args.arms[0] != "dense":
        parser.error("--arms: the first arm must be dense (the reference)")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [(t, a, s) for t in args.tasks for a in args.arms for s in args.seeds]
        extra = args.options.split()
        runs = list(pool.map(lambda job: run(*job, Path(tmp), args.iterations or None, extra), jobs))
    rows = []
    for task in args.tasks:
        for row in summarise(runs, task, args.arms):
            rows.append(row)
            print(line(row), flush=True)
    curves = [{k: r[k] for k in ("task", "arm", "seed", "curve")} for r in runs]
    print(json.dumps({"bench": "lowrank_samples", "rows": rows, "curves": curves}))


if __name__ == "__main__":
    main()
