"""What keeping every member on every rank costs: update time and bytes per iteration.

    mpirun -n 2 python bench/population_cost.py [--hidden 32 512] [--members 1 8 64] [--smoke]

hpcars replicates all M members' parameters on every rank, so a clone is a local
row copy and an iteration sends only the per-branch scalar rows — no parameters,
at a generation's end included. The price is paid in compute and memory: every rank
regenerates the b kept directions of every member (M·b·P noise values) to apply the
updates, and holds M·P floats per copy of state. This bench measures, for the digits
MLP at two widths and M = 1, 8, 64 (N = 8 directions per member, truncation every
2 iterations, swarm on), the share of an iteration's time spent in the update and
the bytes moved per iteration, beside the bytes one broadcast of each clone's
parameters would have cost.

Last line: one JSON object.

``--smoke``: width 32, M = 1 and 2, 2 timed iterations — seconds, the same code path
(for CI).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common
import torch

from hpcars.config import TrainConfig
from hpcars.population.truncation import killed
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import Transport, make_transport
from hpcars.tasks import make_task

ITERATIONS = 6
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(hidden=[32], members=[1, 2], iterations=2)


def measure(members: int, hidden: int, transport: Transport, iterations: int) -> dict:
    cfg = TrainConfig(
        task="digits",
        hidden=hidden,
        directions=8,
        population=members,
        device="cpu",
        generation_every=2 if members > 1 else 0,
        swarm=members > 1,
    )
    trainer = ARSTrainer(cfg, make_task(cfg), transport, [torch.device("cpu")])
    trainer.step()  # warm-up
    records = [trainer.step() for _ in range(iterations)]
    rollout = statistics.median(r.rollout_s for r in records)
    update = statistics.median(r.update_s for r in records)
    comm = sorted({r.comm_bytes for r in records})
    clones_per_generation = killed(members, cfg.kill_fraction) if members > 1 else 0
    return {
        "members": members,
        "parameters": trainer.spec.size,
        "rollout_s": rollout,
        "update_s": update,
        "update_share": update / (rollout + update),
        "comm_bytes_per_iteration": comm,
        "broadcast_bytes_per_generation_avoided": clones_per_generation * trainer.spec.size * 4,
        "state_bytes_per_rank": trainer.state.theta.numel() * 4 * (4 if members > 1 else 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", nargs="+", type=int, default=[32, 512], help="MLP widths")
    parser.add_argument("--members", nargs="+", type=int, default=[1, 8, 64], help="population sizes M")
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="timed iterations per case")
    args = common.parse(parser, SMOKE)
    transport = make_transport()
    rows = [measure(m, h, transport, args.iterations) for h in args.hidden for m in args.members]
    if transport.rank == 0:
        for r in rows:
            print(
                f"P {r['parameters']:7d}  M {r['members']:3d}  scoring {1e3 * r['rollout_s']:8.1f} ms  update "
                f"{1e3 * r['update_s']:8.1f} ms  ({100 * r['update_share']:4.1f} % of the iteration)  "
                f"comm {r['comm_bytes_per_iteration']} B/it  clone broadcasts avoided "
                f"{r['broadcast_bytes_per_generation_avoided']} B/generation  state {r['state_bytes_per_rank']} B/rank",
                flush=True,
            )
        print(json.dumps({"bench": "population_cost", "ranks": transport.size, "rows": rows}))


if __name__ == "__main__":
    main()
