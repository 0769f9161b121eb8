"""Episodes to the ARS paper's thresholds (Table 1) on the Gymnasium v5 MuJoCo tasks.

    python bench/paper.py [--tasks swimmer halfcheetah hopper] [--seeds 0 1 2] [--ranks 2]

Each (task, seed) runs ``mpirun -n RANKS python -m hpcars.train --preset TASK --seed S``
— the paper's variant and hyper-parameters, evaluation of 100 episodes every 10
iterations (the paper's protocol, which is why its figures are multiples of
10 × 2N episodes), stopping at the threshold. Episodes count training episodes
only, as in the paper. Reported per task: the median over seeds of episodes, env
steps and wall clock to the threshold, beside the paper's average of 3 seeds.

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Table 1 of Mania, Guy & Recht (2018): episodes to threshold, for the variant the preset uses.
PAPER = {
    "swimmer": {"threshold": 325, "variant": "V1", "episodes": 100},
    "halfcheetah": {"threshold": 3430, "variant": "V2-t", "episodes": 1707},
    "hopper": {"threshold": 3120, "variant": "V2-t", "episodes": 1973},
}
# Iteration caps so a seed that does not get there ends the bench in bounded time.
CAPS = {"swimmer": 300, "halfcheetah": 300, "hopper": 1000}


def run_one(task: str, seed: int, ranks: int, root: Path) -> dict:
    mpirun = shutil.which("mpirun", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    run_dir = root / f"{task}-{seed}"
    cmd = [mpirun, "-n", str(ranks), sys.executable, "-m", "hpcars.train", "--preset", task, "--seed", str(seed),
           "--iterations", str(CAPS[task]), "--log-every", "1000000", "--run-dir", str(run_dir)]  # fmt: skip
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


def median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(PAPER), choices=list(PAPER))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    result: dict = {"bench": "paper", "ranks": args.ranks, "seeds": args.seeds, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            runs = [run_one(task, seed, args.ranks, Path(tmp)) for seed in args.seeds]
            reached = [r for r in runs if r["reached"]]
            # a seed that never reached the threshold counts as infinitely slow in the median
            episodes = sorted(r["episodes"] if r["reached"] else float("inf") for r in runs)
            med = statistics.median(episodes)
            row = {
                **PAPER[task],
                "runs": runs,
                "reached": f"{len(reached)}/{len(runs)}",
                "median_episodes": med if med != float("inf") else None,
                "median_env_steps": median_or_none([r["env_steps"] for r in reached]),
                "median_wall_s": median_or_none([r["wall_s"] for r in reached]),
            }
            row["at_or_below_paper"] = row["median_episodes"] is not None and row["median_episodes"] <= row["episodes"]
            result["tasks"][task] = row
            print(f"{task:12s} {row['variant']:5s} threshold {row['threshold']}: median {row['median_episodes']} "
                  f"episodes (paper {row['episodes']}), reached {row['reached']}, "
                  f"median {row['median_env_steps']} env steps, {row['median_wall_s']} s; "
                  f"per seed {[r['episodes'] for r in runs]}", flush=True)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
