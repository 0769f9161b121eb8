"""Episodes to the ARS paper's thresholds (Table 1) on the Gymnasium v5 MuJoCo tasks.

    python bench/paper.py [--tasks swimmer halfcheetah hopper] [--seeds 0 1 2] [--ranks 2] [--smoke]

Each (task, seed) runs ``mpirun -n RANKS python -m hpcars.train --preset TASK --seed S``
— the paper's variant and hyper-parameters, evaluation of 100 episodes every 10
iterations (the paper's protocol, which is why its figures are multiples of
10 × 2N episodes), stopping at the threshold. Episodes count training episodes
only, as in the paper. Reported per task: the median over seeds of episodes, env
steps and wall clock to the threshold, beside the paper's average of 3 seeds.

Last line: one JSON object.

``--smoke``: Swimmer, seed 0, 2 ranks, 2 iterations, a 2-episode evaluation —
seconds, the same code path (for CI); its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common

from hpcars.tasks.paper import paper_episodes, paper_threshold

# The preset's variant per task; thresholds and the paper's episodes come from hpcars.tasks.paper.
TASKS = {"swimmer": ("Swimmer-v5", "V1"), "halfcheetah": ("HalfCheetah-v5", "V2-t"), "hopper": ("Hopper-v5", "V2-t")}
# Iteration caps so a seed that does not get there ends the bench in bounded time.
CAPS = {"swimmer": 300, "halfcheetah": 300, "hopper": 1000}
#: ``--smoke``: the same runs at tiny sizes, seconds of run time
SMOKE = dict(tasks=["swimmer"], seeds=[0], ranks=2, iterations=2, eval_episodes=2)


def line(task: str, variant: str, row: dict, runs: list[dict]) -> str:
    return (
        f"{task:12s} {variant:5s} threshold {row['threshold']}: median {row['median_episodes']} episodes "
        f"(paper {row['paper_episodes']}), reached {row['reached']}, median {row['median_env_steps']} "
        f"env steps, {row['median_wall_s']} s; per seed {[r['episodes'] for r in runs]}"
    )


def run_one(task: str, seed: int, ranks: int, root: Path, iterations: int, eval_episodes: int) -> dict:
    """One seed under mpirun; ``iterations`` / ``eval_episodes`` 0: CAPS / the preset's."""
    mpirun = shutil.which("mpirun", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run_dir = root / f"{task}-{seed}"
    cmd = [
        mpirun,
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "hpcars.train",
        "--preset",
        task,
        "--seed",
        str(seed),
        "--iterations",
        str(iterations or CAPS[task]),
        "--log-every",
        "1000000",
        "--run-dir",
        str(run_dir),
    ]
    cmd += ["--eval-episodes", str(eval_episodes)] if eval_episodes else []
    subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    summary = json.loads((run_dir / "summary.json").read_text())
    hit = summary["reached_target"]
    return {
        "seed": seed,
        "reached": hit is not None,
        "episodes": hit["episodes"] if hit else None,
        "env_steps": hit["samples"] if hit else None,
        "wall_s": round(hit["wall_s"], 1) if hit else None,
        "final_score": round(summary["final"]["score"], 1),
        "episodes_run": summary["episodes"],
    }


def median_to_threshold(values: list) -> float | None:
    """Median over seeds, a seed that never reached the threshold counting as slower than all."""
    med = statistics.median(sorted(math.inf if v is None else v for v in values))
    return None if math.isinf(med) else med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=0, help="iteration cap of every task (0: CAPS)")
    parser.add_argument("--eval-episodes", type=int, default=0, help="episodes per evaluation (0: the preset's)")
    args = common.parse(parser, SMOKE)
    result: dict = {"bench": "paper", "ranks": args.ranks, "seeds": args.seeds, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            env_id, variant = TASKS[task]
            runs = [
                run_one(task, seed, args.ranks, Path(tmp), args.iterations, args.eval_episodes) for seed in args.seeds
            ]
            row = {
                "env": env_id,
                "variant": variant,
                "threshold": paper_threshold(env_id),
                "paper_episodes": paper_episodes(env_id, variant),
                "runs": runs,
                "reached": f"{sum(r['reached'] for r in runs)}/{len(runs)}",
                "median_episodes": median_to_threshold([r["episodes"] for r in runs]),
                "median_env_steps": median_to_threshold([r["env_steps"] for r in runs]),
                "median_wall_s": median_to_threshold([r["wall_s"] for r in runs]),
            }
            med = row["median_episodes"]
            row["at_or_below_paper"] = med is not None and med <= row["paper_episodes"]
            result["tasks"][task] = row
            print(line(task, variant, row, runs), flush=True)
    common.emit(result)


if __name__ == "__main__":
    main()
