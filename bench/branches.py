"""Batched branch evaluation vs the seed's per-direction Python loop.

Toy regression (degree-4 polynomial, linear model, batch 2048), 32 directions =
64 branches, one rank, one thread. Both sides regenerate the same directions and
score the same mini-batch; the rewards are checked to agree before timing.

    python bench/branches.py [--directions 32] [--repeats 30] [--smoke]

``--smoke``: 4 directions, 2 repeats — seconds, the same code path (for CI).

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable

import common
import torch
import torch.nn.functional as F

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks.supervised import Batch, Regression

#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(directions=4, repeats=2, branch_batch=8)


def batched_rewards(trainer: ARSTrainer, branches: list[int]) -> torch.Tensor:
    """hpcars' way: the trainer scores iteration 0's branches in batched calls (column 0: the reward)."""
    return torch.from_numpy(trainer.score_branches(trainer.models[0], branches, 0)[:, 0])


def looped_rewards(trainer: ARSTrainer, task: Regression, batch: Batch) -> torch.Tensor:
    """The seed's way: for each direction and sign, load θ ± νδ into the model and call it."""
    module = trainer.models[0].module
    spec = trainer.spec
    rewards = []
    for k in range(trainer.cfg.directions):
        delta = trainer.directions(0, 0, [k], torch.device("cpu"))[0]  # iteration 0, member 0
        for sign in (1.0, -1.0):
            spec.load(module, trainer.theta + sign * trainer.cfg.noise_std * delta)
            with torch.no_grad():
                loss = F.smooth_l1_loss(module(batch.x), batch.y)
            rewards.append(-float(loss))
    return torch.tensor(rewards, dtype=torch.float64)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--branch-batch", type=int, default=64)
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)

    cfg = TrainConfig(directions=args.directions, branch_batch=args.branch_batch, device="cpu")
    task = Regression(cfg.seed, track_obs=False)  # V1, as cfg
    trainer = ARSTrainer(cfg, task, SingleProcess(), [torch.device("cpu")])
    branches = list(range(2 * cfg.directions))
    batch = task.begin_iteration(0, 0, torch.device("cpu"))

    batched = batched_rewards(trainer, branches)
    looped = looped_rewards(trainer, task, batch)
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)

    t_batched = timed(lambda: batched_rewards(trainer, branches), args.repeats)
    t_looped = timed(lambda: looped_rewards(trainer, task, batch), args.repeats)
    result = {
        "bench": "branches",
        "task": "regression",
        "directions": cfg.directions,
        "branches": len(branches),
        "branch_batch": cfg.branch_batch,
        "batched_ms": round(t_batched * 1e3, 3),
        "looped_ms": round(t_looped * 1e3, 3),
        "speedup": round(t_looped / t_batched, 2),
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"batched {result['batched_ms']} ms vs looped {result['looped_ms']} ms per iteration's "
        f"{len(branches)} branches: {result['speedup']}x"
    )
    common.emit(result)


if __name__ == "__main__":
    main()
