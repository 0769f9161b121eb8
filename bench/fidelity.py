"""Episodes to the paper's thresholds: hpcars against a port of the authors' code, same seeds.

    python bench/fidelity.py [--tasks swimmer,halfcheetah,hopper] [--seeds 0,1,2,3,4] [--jobs 2]

For every task and seed, five runs with the paper's hyper-parameters (hpcars'
presets), 20-episode evaluations every 10 iterations (the paper's 100 would
dominate the clock; both sides use the same), stopping at the threshold or at a cap
of ``CAPS`` training episodes:

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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
# task -> (env id, reference-loop arguments); hpcars takes the same from --preset
TASKS = {
    "swimmer": ("Swimmer-v5", "1 1 0.02 0.01 0 NoFilter 325"),
    "halfcheetah": ("HalfCheetah-v5", "32 4 0.02 0.03 0 MeanStdFilter 3430"),
    "hopper": ("Hopper-v5", "8 4 0.01 0.025 1 MeanStdFilter 3120"),
}
CAPS = {"swimmer": 600, "halfcheetah": 6400, "hopper": 6400}  # training episodes
VARIANTS = {"swimmer": ("authors", "hpcars", "hpcars envpool")}
ALL_VARIANTS = ("authors", "authors+clip", "hpcars", "hpcars no-clip", "hpcars envpool")
HPCARS_OPTIONS = {
    "hpcars": [],
    "hpcars no-clip": ["--clip-actions", "false"],
    "hpcars envpool": ["--env-backend", "envpool"],
}


def reference_cmd(task: str, seed: int) -> list[str]:
    env_id, numbers = TASKS[task]
    n, b, step, std, shift, filt, target = numbers.split()
    iterations = CAPS[task] // (2 * int(n))
    return [
        sys.executable,
        str(HERE / "ars_reference.py"),
        *("--env", env_id, "--seed", str(seed), "--n-directions", n, "--deltas-used", b),
        *("--step-size", step, "--delta-std", std, "--shift", shift, "--filter", filt, "--target", target),
        *("--max-iterations", str(iterations), "--eval-rollouts", "20"),
    ]


def run(task: str, variant: str, seed: int, root: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if variant.startswith("authors"):
        cmd = reference_cmd(task, seed) + (["--clip-actions"] if variant == "authors+clip" else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        result = json.loads(out.strip().splitlines()[-1])
        hit = result["reached"]
        return {"episodes": hit["episodes"] if hit else None, "wall_s": result["wall_s"]}
    run_dir = root / f"{task}-{variant.replace(' ', '_')}-{seed}"
    n = int(TASKS[task][1].split()[0])
    cmd = [sys.executable, "-m", "hpcars.train", "--preset", task, "--seed", str(seed)]
    cmd += ["--eval-episodes", "20", "--iterations", str(CAPS[task] // (2 * n)), "--log-every", "1000000"]
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
    args = parser.parse_args()
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
        futures = {key: pool.submit(run, *key, Path(tmp)) for key in plan}
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
    print(json.dumps(result))


if __name__ == "__main__":
    main()
