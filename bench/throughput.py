"""Env steps per second: an hpcars rank vs a bare Gymnasium loop, and 2 ranks vs 1.

    python bench/throughput.py [--env HalfCheetah-v5] [--episodes 32] [--repeats 5]

Part 1, one process, one core: the same linear policy (fixed random weights), the
same episode seeds and the same number of steps, run (a) as a bare Gymnasium loop
(one env, ``a = clip(W @ obs)``, ``env.step(a)``) and (b) through hpcars' lockstep
rollout of a rank (``GymTask.rollouts``: batched actions for all branches, V2
observation bookkeeping on). Repetitions alternate between the two; the median
CPU-time rate is reported. Target: ratio ≥ 0.95.

Part 2: whole ARS iterations (N = 32, V2-t, HalfCheetah) under ``mpirun -n 1`` and
``mpirun -n 2``; training env steps per second of the whole job. Target ≥ 1.85×
on this 2-core machine.

Last line: one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hpcars.branches import BatchedModel
from hpcars.config import TrainConfig
from hpcars.envs import make_env
from hpcars.tasks.rl import GymTask


def bare_loop(env_id: str, weight: np.ndarray, seeds: list[int]) -> int:
    env = make_env(env_id)
    low, high = env.action_space.low, env.action_space.high
    steps = 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(np.clip(weight @ obs, low, high))
            steps += 1
            done = terminated or truncated
    return steps


def hpcars_rollouts(task: GymTask, model: BatchedModel, flat: torch.Tensor, seeds: list[int]) -> int:
    stack = flat[None].repeat(len(seeds), 1)
    _, steps, _ = task.rollouts(model, stack, seeds, 0.0, record=True)
    return int(steps.sum())


def single_core(env_id: str, episodes: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    task = GymTask(env_id, 0, branch_batch=episodes)
    rng = np.random.default_rng(0)
    weight = (0.1 * rng.standard_normal((task.action_dim, task.input_dim))).astype(np.float32)
    module = task.build_model()
    model = BatchedModel(module, torch.device("cpu"))
    flat = torch.from_numpy(weight.reshape(-1))
    seeds = list(range(episodes))
    rates: dict[str, list[float]] = {"bare": [], "hpcars": []}
    sides = (
        ("bare", lambda: bare_loop(env_id, weight.astype(np.float64), seeds)),
        ("hpcars", lambda: hpcars_rollouts(task, model, flat, seeds)),
    )
    for _, fn in sides:
        fn()  # warm-up: hpcars creates its env pool on first use
    for _ in range(repeats):
        for name, fn in sides:
            t = time.process_time()  # CPU time of this single-threaded process
            steps = fn()
            rates[name].append(steps / (time.process_time() - t))
    bare, ours = statistics.median(rates["bare"]), statistics.median(rates["hpcars"])
    return {"bare_steps_per_s": round(bare), "hpcars_steps_per_s": round(ours), "ratio": round(ours / bare, 3)}


def worker(env_id: str, iterations: int) -> None:
    """Inside mpirun: time whole ARS iterations; rank 0 prints one JSON line."""
    from hpcars.comm import make_transport
    from hpcars.engine import ARSTrainer
    from hpcars.tasks import make_task

    torch.set_num_threads(1)
    transport = make_transport()
    cfg = TrainConfig(task=env_id, variant="v2", directions=32, top_directions=4, device="cpu")
    trainer = ARSTrainer(cfg, make_task(cfg), transport, [torch.device("cpu")])
    trainer.step()  # warm-up: env creation
    t = time.perf_counter()
    steps = sum(trainer.step().samples for _ in range(iterations))
    if transport.rank == 0:
        print(json.dumps({"ranks": transport.size, "steps_per_s": steps / (time.perf_counter() - t)}))


def scaling(env_id: str, iterations: int) -> dict:
    mpirun = shutil.which("mpirun", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    rates = {}
    for ranks in (1, 2):
        cmd = [
            mpirun,
            "-n",
            str(ranks),
            sys.executable,
            __file__,
            "--worker",
            "--env",
            env_id,
            "--iterations",
            str(iterations),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
        rates[ranks] = json.loads(out.strip().splitlines()[-1])["steps_per_s"]
    return {
        "steps_per_s_1_rank": round(rates[1]),
        "steps_per_s_2_ranks": round(rates[2]),
        "speedup_2_vs_1": round(rates[2] / rates[1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=5, help="timed ARS iterations per world size")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.env, args.iterations)
        return
    result = {"bench": "throughput", "env": args.env, "episodes": args.episodes}
    result.update(single_core(args.env, args.episodes, args.repeats))
    print(
        f"one core: bare Gymnasium {result['bare_steps_per_s']} steps/s, hpcars rank "
        f"{result['hpcars_steps_per_s']} steps/s, ratio {result['ratio']}"
    )
    result.update(scaling(args.env, args.iterations))
    print(
        f"ARS iterations: 1 rank {result['steps_per_s_1_rank']} steps/s, 2 ranks "
        f"{result['steps_per_s_2_ranks']} steps/s, {result['speedup_2_vs_1']}x"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
