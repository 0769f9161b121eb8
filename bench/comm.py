"""Bytes communicated per ARS iteration vs what broadcasting the parameters would cost.

    mpirun -n 2 python bench/comm.py [--directions 8] [--smoke]

Trains a few iterations of three models of very different size (the toy
regression's 5 parameters, the digits MLP with 2.4k, and a digits MLP widened to
1.0M parameters) with the same N, and reads the bytes each rank received from
collectives per iteration. Beside them it times an MPI broadcast of the 1M
parameters (float32) — what a master/worker design (the ARS reference, OpenAI ES)
sends to every worker each iteration. Last line: one JSON object.

``--smoke``: N = 2, the wide MLP 256 wide (19k parameters) — seconds, the same code
path (for CI).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time

import common
import numpy as np
import torch

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import MPITransport, make_transport
from hpcars.tasks import make_task

#: label -> (task, hidden width); the widest model's label says its size (``--wide-hidden``)
MODELS = {"regression": ("regression", 32), "digits-2k": ("digits", 32), "digits-wide": ("digits", 13_334)}
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(directions=2, wide_hidden=256)


def size_label(parameters: int) -> str:
    """A parameter count in a label: 1,000,060 -> 1M, 50,698 -> 50k, 5 -> 5."""
    for unit, suffix in ((10**6, "M"), (10**3, "k")):
        if parameters >= unit:
            return f"{parameters // unit}{suffix}"
    return str(parameters)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--wide-hidden", type=int, default=13_334, help="hidden width of the widest model")
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)
    transport = make_transport()
    if not isinstance(transport, MPITransport):
        raise SystemExit("bench/comm.py: run it under mpirun with at least 2 ranks")

    result: dict = {"bench": "comm", "world_size": transport.size, "directions": args.directions, "models": {}}
    for label, (task_name, hidden) in MODELS.items():
        if label == "digits-wide":
            hidden = args.wide_hidden
        cfg = TrainConfig(task=task_name, hidden=hidden, directions=args.directions, branch_batch=16, device="cpu")
        trainer = ARSTrainer(cfg, make_task(cfg), transport, [torch.device("cpu")])
        per_iteration = []
        for _ in range(args.iterations):
            record = trainer.step()
            per_iteration.append(record.comm_bytes)
        if label == "digits-wide":
            label = f"digits-{size_label(trainer.spec.size)}"
        result["models"][label] = {
            "parameters": trainer.spec.size,
            "bytes_per_iteration": per_iteration[-1],
            "comm_s": round(record.comm_s, 6),
            "iteration_s": round(record.rollout_s + record.comm_s + record.update_s, 3),
        }

    size = max(m["parameters"] for m in result["models"].values())
    params = np.zeros(size, dtype=np.float32)
    transport.comm.Barrier()
    t = time.perf_counter()
    for _ in range(5):
        transport.comm.Bcast(params, root=0)
    bcast_s = (time.perf_counter() - t) / 5
    bytes_seen = {m["bytes_per_iteration"] for m in result["models"].values()}
    result["broadcast_1M_params"] = {"bytes_per_receiver": params.nbytes, "seconds": round(bcast_s, 6)}
    result["bytes_independent_of_parameters"] = len(bytes_seen) == 1
    result["ratio_broadcast_to_hpcars"] = round(params.nbytes / bytes_seen.pop(), 1)
    if transport.rank == 0:
        for label, m in result["models"].items():
            print(f"{label:11s} {m['parameters']:>9,d} params: {m['bytes_per_iteration']} B/iteration")
        print(
            f"broadcasting {size:,d} float32 params: {params.nbytes:,d} B per receiver per iteration "
            f"({result['ratio_broadcast_to_hpcars']}x more)"
        )
        common.emit(result)


if __name__ == "__main__":
    main()
