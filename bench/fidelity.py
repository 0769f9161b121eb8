"""Episodes to the paper's thresholds: hpcars against a port of the authors' code, same seeds.

    python bench/fidelity.py [--tasks swimmer,halfcheetah,hopper] [--seeds 0,1,2,3,4] [--jobs 2] [--smoke]

For every task and seed, five runs with the paper's hyper-parameters (hpcars'
presets), 20-episode evaluations (``--eval-episodes``) every 10 iterations (the
paper's 100 would dominate the clock; both sides use the same), stopping at the
threshold or at a cap of ``CAPS`` training episodes:

* ``authors`` — ``bench/ars_reference.py``, the authors' loop as published;
* ``authors+clip`` — the same with actions clipped to their bounds (hpcars' default);
* ``hpcars`` — ``python -m hpcars.train --preset TASK`` (one rank; clips actions);
* ``hpcars no-clip`` — the same with ``--clip-actions false``;
* ``hpcars envpool`` — the same with ``--env-backend envpool`` (other episodes,
  same algorithm: do the backends reach the thresholds with comparable episodes?).

(Swimmer skips the two clipping variants: its control cost is 1e-4 per unit².)
Runs go ``--jobs`` at a time, one per core. Episodes count training episodes up to
the first evaluation at the threshold. Reported per task and variant: seeds that
got there, and the median episodes over all seeds (a seed that did not get there
counts as never: "> cap" when fewer than half did).

Last line: one JSON object.

``--smoke``: Swimmer, seed 0, a cap of 4 episodes (2 iterations), 1-episode
evaluations, the reference at its own ``--smoke`` sizes — seconds, the same code path
(for CI); its episodes mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

from hpcars.config import PRESET_DIR

HERE = Path(__file__).resolve().parent
TASKS = ("swimmer", "halfcheetah", "hopper")  # hpcars presets: both sides take their settings from them
CAPS = {"swimmer": 600, "halfcheetah": 6400, "hopper": 6400}  # training episodes
VARIANTS = {"swimmer": ("authors", "hpcars", "hpcars envpool")}
ALL_VARIANTS = ("authors", "authors+clip", "hpcars", "hpcars no-clip", "hpcars envpool")
HPCARS_OPTIONS = {
    "hpcars": [],
    "hpcars no-clip": ["--clip-actions", "false"],
    "hpcars envpool": ["--env-backend", "envpool"],
}
#: ``--smoke``: the same runs at tiny sizes, seconds of run time
SMOKE = dict(tasks="swimmer", seeds="0", cap=4, eval_episodes=1)


def preset(task: str) -> dict:
    return tomllib.loads((PRESET_DIR / f"{task}.toml").read_text())


def reference_cmd(task: str, seed: int, eval_episodes: int) -> list[str]:
    """The reference loop with the preset's settings (b = 0 in hpcars means all N)."""
    p = preset(task)
    n = p["directions"]
    filt = "MeanStdFilter" if p["variant"] == "v2" else "NoFilter"
    numbers = {
        "--env": p["task"],
        "--seed": seed,
        "--n-directions": n,
        "--deltas-used": p.get("top-directions") or n,
        "--step-size": p["step-size"],
        "--delta-std": p["noise-std"],
        "--shift": p["shift"],
        "--filter": filt,
        "--target": p["target"],
        "--max-iterations": CAPS[task] // (2 * n),
        "--eval-rollouts": eval_episodes,
    }
    return [sys.executable, str(HERE / "ars_reference.py"), *(x for k, v in numbers.items() for x in (k, str(v)))]


def run(task: str, variant: str, seed: int, root: Path, eval_episodes: int, smoke: bool) -> dict:
    """One run; ``smoke`` runs the reference at its ``--smoke`` sizes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if variant.startswith("authors"):
        cmd = reference_cmd(task, seed, eval_episodes) + (["--clip-actions"] if variant == "authors+clip" else [])
        cmd += ["--smoke"] if smoke else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        result = json.loads(out.strip().splitlines()[-1])
        hit = result["reached"]
        return {"episodes": hit["episodes"] if hit else None, "wall_s": result["wall_s"]}
    run_dir = root / f"{task}-{variant.replace(' ', '_')}-{seed}"
    n = preset(task)["directions"]
    cmd = [sys.executable, "-m", "hpcars.train", "--preset", task, "--seed", str(seed)]
    cmd += ["--eval-episodes", str(eval_episodes), "--iterations", str(CAPS[task] // (2 * n)), "--log-every", "1000000"]
    cmd += ["--run-dir", str(run_dir), *HPCARS_OPTIONS[variant]]
    subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    summary = json.loads((run_dir / "summary.json").read_text())
    hit = summary["reached_target"]
    return {"episodes": hit["episodes"] if hit else None, "wall_s": round(summary.get("wall_s", 0.0), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="swimmer,halfcheetah,hopper")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help="run only these (comma-separated)")
    parser.add_argument("--cap", type=int, default=0, help="training-episode cap for every task (0: CAPS)")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per evaluation, both sides")
    args = common.parse(parser, SMOKE)
    if args.cap:
        CAPS.update(dict.fromkeys(CAPS, args.cap))
    chosen = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    plan = [
        (task, variant, seed)
        for task in args.tasks.split(",")
        for seed in seeds
        for variant in VARIANTS.get(task, ALL_VARIANTS)
        if variant in chosen
    ]
    result: dict = {"bench": "fidelity", "caps": CAPS, "runs": {}, "summary": {}}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = {key: pool.submit(run, *key, Path(tmp), args.eval_episodes, args.smoke) for key in plan}
        for (task, variant, seed), future in futures.items():
            one = future.result()
            result["runs"][f"{task} {variant} {seed}"] = one
            print(f"{task:12s} {variant:15s} seed {seed}: {one['episodes'] or 'not reached'}", flush=True)
    for task in args.tasks.split(","):
        for variant in (v for v in VARIANTS.get(task, ALL_VARIANTS) if v in chosen):
            episodes = [result["runs"][f"{task} {variant} {s}"]["episodes"] for s in seeds]
            reached = [e for e in episodes if e is not None]
            median = statistics.median(math.inf if e is None else e for e in episodes)
            shown = f"{median:g}" if math.isfinite(median) else f"> {CAPS[task]}"
            result["summary"][f"{task} {variant}"] = {
                "reached": f"{len(reached)}/{len(seeds)}",
                "median_episodes": shown,
                "episodes": episodes,
            }
            print(f"{task:12s} {variant:15s} reached {len(reached)}/{len(seeds)}, median {shown}")
    common.emit(result)


if __name__ == "__main__":
    main()
