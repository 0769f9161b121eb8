"""Bytes communicated per ARS iteration vs what broadcasting the parameters would cost.

    mpirun -n 2 python bench/comm.py [--directions 8]

Trains a few iterations of three models of very different size (the toy
regression's 5 parameters, the digits MLP with 2.4k, and a digits MLP widened to
1.0M parameters) with the same N, and reads the bytes each rank received from
collectives per iteration. Beside them it times an MPI broadcast of the 1M
parameters (float32) — what a master/worker design (the ARS reference, OpenAI ES)
sends to every worker each iteration. Last line: one JSON object.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time

import numpy as np
import torch

from hpcars.comm import MPITransport, make_transport
from hpcars.config import TrainConfig
from hpcars.engine import ARSTrainer
from hpcars.tasks import make_task

MODELS = {"regression": ("regression", 32), "digits-2k": ("digits", 32), "digits-1M": ("digits", 13_334)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directions", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    transport = make_transport()
    if not isinstance(transport, MPITransport):
        raise SystemExit("bench/comm.py: run it under mpirun with at least 2 ranks")

    result: dict = {"bench": "comm", "world_size": transport.size, "directions": args.directions, "models": {}}
    for label, (task_name, hidden) in MODELS.items():
        cfg = TrainConfig(task=task_name, hidden=hidden, directions=args.directions, branch_batch=16, device="cpu")
        trainer = ARSTrainer(cfg, make_task(cfg), transport, [torch.device("cpu")])
        per_iteration = []
        for _ in range(args.iterations):
            record = trainer.step()
            per_iteration.append(record.comm_bytes)
        result["models"][label] = {
            "parameters": trainer.spec.size,
            "bytes_per_iteration": per_iteration[-1],
            "comm_s": round(record.comm_s, 6),
            "iteration_s": round(record.rollout_s + record.comm_s + record.update_s, 3),
        }

    size = result["models"]["digits-1M"]["parameters"]
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
        print(json.dumps(result))


if __name__ == "__main__":
    main()
