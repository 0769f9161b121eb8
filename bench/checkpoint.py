"""Checkpoint write time as a fraction of training time at the default interval.

    python bench/checkpoint.py [--repeats 3] [--smoke]

Two cases, one process, one thread:

* linear HalfCheetah-v5 policy (the paper's V2-t setting): one ARS iteration is
  timed, then a checkpoint of that trainer's full state (with a 1,000-row metrics
  table) is written ``--repeats`` times;
* a 1M-parameter MLP (the digits MLP widened to 1.0M parameters) with 64 members,
  particle swarm and annealing on: one member's ARS iteration is timed and a
  population iteration counted as 64 of them (a real 64-member iteration of this
  model takes about 20 minutes on one core); the checkpoint written is the real
  state of a 64-member trainer: parameters, velocities, personal bests and
  annealing anchors (4 × 256 MB of float32).

Fraction = write time / (checkpoint_every × iteration time), with the default
``--checkpoint-every``. Target ≤ 2 %. Last line: one JSON object.

``--smoke``: N = 1, a 64-wide MLP, 2 members, one write — seconds, the same code
path (for CI); its fractions mean nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

from hpcars.config import TrainConfig, to_dict
from hpcars.run import checkpoint
from hpcars.run.checkpoint import Checkpoint
from hpcars.run.engine import ARSTrainer
from hpcars.run.snapshot import snapshot
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks import make_task

#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(repeats=1, directions=1, hidden=64, members=2)


def line(name: str, row: dict) -> str:
    return (
        f"{name:20s} {row['parameters']:>9,d} params {row['file_mb']:8.1f} MB written in {row['write_s']:.3f} s; "
        f"{row['checkpoint_every']} iterations take {row['checkpoint_every'] * row['iteration_s']:.1f} s: "
        f"{100 * row['fraction']:.3f} %"
    )


def state_of(trainer: ARSTrainer, cfg: TrainConfig, metric_rows: int) -> Checkpoint:
    """What training writes: the trainer's snapshot plus a run's worth of metrics."""
    return dataclasses.replace(
        snapshot(trainer),
        config=to_dict(cfg),
        elapsed_s=1.0,
        world_sizes=[(0, 1)],
        metrics={c: np.arange(metric_rows, dtype=np.float64) for c in ("iteration", "reward_mean", "score")},
    )


def measure(cfg: TrainConfig, members: int, repeats: int) -> dict:
    trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")])
    trainer.step()  # warm-up (env creation)
    t = time.perf_counter()
    trainer.step()
    iteration_s = (time.perf_counter() - t) * members
    if members > 1:  # the state of a population run of this model, every optional array present
        cfg = dataclasses.replace(cfg, population=members, swarm=True, anneal_t0=1.0)
        trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")])
    state = state_of(trainer, cfg, 1000)
    writes = []
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        for _ in range(repeats):
            t = time.perf_counter()
            path = checkpoint.write(Path(tmp), state, keep=1)
            writes.append(time.perf_counter() - t)
        size = path.stat().st_size
    write_s = statistics.median(writes)
    return {
        "parameters": trainer.spec.size,
        "members": members,
        "file_mb": round(size / 2**20, 1),
        "iteration_s": round(iteration_s, 3),
        "write_s": round(write_s, 4),
        "checkpoint_every": cfg.checkpoint_every,
        "fraction": round(write_s / (cfg.checkpoint_every * iteration_s), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--directions", type=int, default=32, help="N of both cases")
    parser.add_argument("--hidden", type=int, default=13_334, help="hidden width of the MLP case (1.0M parameters)")
    parser.add_argument("--members", type=int, default=64, help="population of the MLP case")
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)
    n, top = args.directions, min(4, args.directions)
    cases = {
        "halfcheetah-linear": (
            TrainConfig(task="HalfCheetah-v5", variant="v2", directions=n, top_directions=top, device="cpu"),
            1,
        ),
        f"mlp-{args.members}-members": (
            TrainConfig(task="digits", hidden=args.hidden, directions=n, device="cpu"),
            args.members,
        ),
    }
    result: dict = {"bench": "checkpoint", "cases": {}}
    for name, (cfg, members) in cases.items():
        row = measure(cfg, members, args.repeats)
        result["cases"][name] = row
        print(line(name, row), flush=True)
    common.emit(result)


if __name__ == "__main__":
    main()
