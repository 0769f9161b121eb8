"""Stragglers: static vs dynamic scheduling vs asynchronous ARS on the paper's MuJoCo presets.

    python bench/stragglers.py [--tasks halfcheetah,hopper] [--seeds 3] [--skip-threshold] [--smoke]

Every run is ``mpirun -n K python -m hpcars.train --preset TASK --schedule MODE`` with
20-episode evaluations every 10 iterations (the preset's 100 would dominate the
clock), each mode run one after the other for each seed so that machine noise
spreads evenly.

1. Throughput: training env steps per second between the first and the last update
   of a 12-iteration run (``metrics.csv``: Δ total env steps / Δ elapsed; start-up and
   evaluations excluded), K = 2 (one rank per core) and K = 3 (two ranks share a core:
   one real straggler; ``--ranks``), seed 0.
2. To the paper's threshold (``--stop-at-target``, capped at ``--cap`` iterations),
   K = 3 (the last of ``--ranks``), seeds 0..S−1: wall clock and training episodes
   (all scored episodes: in the asynchronous mode, dropped updates' episodes count
   too) at the first evaluation that reached it. Median over seeds, and how many
   seeds got there.

Last line: one JSON object.

``--smoke``: Hopper, K = 2, 2 iterations per run, 2-episode evaluations, part 1 only
(part 2 would be three more mpirun launches; ``--smoke --no-skip-threshold`` adds it,
one seed capped at 2 iterations) — seconds, the same code path (for CI); its figures
mean nothing.
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
from pathlib import Path

import common

MODES = ("static", "dynamic", "async")
CAPS = {"halfcheetah": 200, "hopper": 400}  # iterations: 12,800 and 6,400 training episodes
#: ``--smoke``: the same runs at tiny sizes, seconds of run time
SMOKE = dict(
    tasks="hopper", seeds=1, ranks="2", iterations=2, cap=2, eval_episodes=2, skip_threshold=True, modes="async"
)


def train(task: str, mode: str, ranks: int, seed: int, eval_episodes: int, extra: list[str], run_dir: Path) -> dict:
    cmd = [
        *common.mpirun(ranks),
        sys.executable,
        "-m",
        "hpcars.train",
        "--preset",
        task,
        "--schedule",
        mode,
        "--seed",
        str(seed),
        "--eval-episodes",
        str(eval_episodes),
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def training_rate(metrics: Path) -> float:
    """Env steps per second between the first and the last update row (evaluation rows excluded)."""
    rows = [r for r in csv.DictReader(metrics.read_text().splitlines()) if r.get("seq", "0") != "-1"]
    first, last = rows[0], rows[-1]
    steps = float(last["total_samples"]) - float(first["total_samples"])
    return steps / (float(last["elapsed_s"]) - float(first["elapsed_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="halfcheetah,hopper")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-threshold", action=argparse.BooleanOptionalAction, default=False, help="only part 1")
    parser.add_argument("--ranks", default="2,3", help="world sizes of part 1; part 2 runs on the last")
    parser.add_argument("--iterations", type=int, default=12, help="iterations of each part-1 run")
    parser.add_argument("--cap", type=int, default=0, help="part 2: iteration cap of every task (0: CAPS)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation")
    parser.add_argument("--modes", default=",".join(MODES), help="schedules compared")
    args = common.parse(parser, SMOKE)
    world_sizes = [int(k) for k in args.ranks.split(",")]
    modes = args.modes.split(",")
    result: dict = {"bench": "stragglers", "throughput": {}, "threshold": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for task in args.tasks.split(","):
            for ranks in world_sizes:
                for mode in modes:
                    extra = ["--iterations", str(args.iterations), "--stop-at-target", "false", "--eval-every", "0"]
                    train(task, mode, ranks, 0, args.eval_episodes, extra, root / f"tp-{task}-{ranks}-{mode}")
                    rate = training_rate(root / f"tp-{task}-{ranks}-{mode}" / "metrics.csv")
                    result["throughput"][f"{task} {ranks} ranks {mode}"] = round(rate)
                    print(f"{task:12s} {ranks} ranks {mode:8s} {rate:8.0f} env steps/s", flush=True)
            if args.skip_threshold:
                continue
            runs: dict[str, list[dict]] = {m: [] for m in modes}
            for seed in range(args.seeds):
                for mode in modes:
                    extra = ["--iterations", str(args.cap or CAPS[task])]
                    s = train(
                        task, mode, world_sizes[-1], seed, args.eval_episodes, extra, root / f"th-{task}-{mode}-{seed}"
                    )
                    hit = s["reached_target"]
                    runs[mode].append(
                        {
                            "seed": seed,
                            "reached": hit is not None,
                            "wall_s": hit["wall_s"] if hit else None,
                            "episodes": hit["episodes"] if hit else None,
                        }
                    )
                    where = f"{hit['episodes']} episodes, {hit['wall_s']:.0f} s" if hit else "not reached"
                    print(f"{task:12s} seed {seed} {mode:8s} threshold: {where}", flush=True)
            for mode, rows in runs.items():
                hits = [r for r in rows if r["reached"]]
                result["threshold"][f"{task} {mode}"] = {
                    "reached": f"{len(hits)}/{len(rows)}",
                    "median_wall_s": statistics.median(r["wall_s"] for r in hits) if hits else None,
                    "median_episodes": statistics.median(r["episodes"] for r in hits) if hits else None,
                    "seeds": rows,
                }
                summary = result["threshold"][f"{task} {mode}"]
                print(
                    f"{task:12s} {mode:8s} reached {summary['reached']}; median {summary['median_wall_s']} s, "
                    f"{summary['median_episodes']} episodes",
                    flush=True,
                )
    common.emit(result)


if __name__ == "__main__":
    main()
