"""Gymnasium against EnvPool: the same trained policy, return distributions over many episodes.

    python bench/backends.py [--tasks swimmer,hopper,halfcheetah,walker2d] [--episodes 200] [--smoke]

Per task: train a policy briefly with the paper's preset (Gymnasium backend,
``ITERATIONS``; a policy that moves, not the threshold), then run its best
parameters noise-free for ``--episodes`` episodes with each backend
(``hpcars.play``'s evaluation, ``--env-backend`` overridden; the backends draw
different initial states) and compare the two samples of returns with the
two-sample Kolmogorov–Smirnov test (scipy's ``ks_2samp``) and a Mann–Whitney U
test. Agreement: p > 0.01 for both.

``--smoke``: Swimmer only, 1 training iteration, 3 episodes per backend — seconds,
the same code path (for CI); its p-values mean nothing.

Last line: one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import common
from scipy.stats import ks_2samp, mannwhitneyu

from hpcars.cli.play import evaluate
from hpcars.run.policy import load_policy
from hpcars.runtime.comm import SingleProcess

ITERATIONS = {"swimmer": 60, "hopper": 60, "halfcheetah": 20, "walker2d": 15}
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(tasks="swimmer", episodes=3, iterations=1, eval_episodes=1)


def line(task: str, one: dict) -> str:
    return (
        f"{task:12s} gymnasium {one['gymnasium']['mean']:8.1f} ± {one['gymnasium']['std']:6.1f}   "
        f"envpool {one['envpool']['mean']:8.1f} ± {one['envpool']['std']:6.1f}   "
        f"KS p {one['ks_p']:.3f}   Mann-Whitney p {one['mannwhitney_p']:.3f}"
    )


def train(task: str, run_dir: Path, iterations: int, eval_episodes: int) -> None:
    cmd = [sys.executable, "-m", "hpcars.train", "--preset", task, "--iterations", str(iterations)]
    cmd += ["--eval-every", "5", "--eval-episodes", str(eval_episodes), "--stop-at-target", "false"]
    cmd += ["--log-every", "1000000"]
    subprocess.run([*cmd, "--run-dir", str(run_dir)], check=True, capture_output=True, text=True)


def compare(run_dir: Path, episodes: int) -> dict:
    returns = {}
    for backend in ("gymnasium", "envpool"):
        policy = load_policy(run_dir, "best", env_backend=backend)
        returns[backend] = evaluate(policy, episodes, SingleProcess())[:, 0]
    a, b = returns["gymnasium"], returns["envpool"]
    return {
        "gymnasium": {"mean": round(float(a.mean()), 1), "std": round(float(a.std()), 1)},
        "envpool": {"mean": round(float(b.mean()), 1), "std": round(float(b.std()), 1)},
        "ks_p": round(float(ks_2samp(a, b).pvalue), 3),
        "mannwhitney_p": round(float(mannwhitneyu(a, b).pvalue), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="swimmer,hopper,halfcheetah,walker2d")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=0, help="training iterations per task (0: ITERATIONS)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes of each evaluation while training")
    args = common.parse(parser, SMOKE)
    result: dict = {"bench": "backends", "episodes": args.episodes, "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            run_dir = Path(tmp) / task
            train(task, run_dir, args.iterations or ITERATIONS[task], args.eval_episodes)
            one = compare(run_dir, args.episodes)
            result["tasks"][task] = one
            print(line(task, one), flush=True)
    common.emit(result)


if __name__ == "__main__":
    main()
