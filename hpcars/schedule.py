"""Which branches a rank scores in an iteration, and how every branch's row reaches every rank.

A branch's reward depends only on (seed, iteration, branch) and is computed in a
batched call of exactly ``--branch-batch`` rows (a short call is padded), whose
kernels treat every row on its own. So *which* rank scores a branch, and with which
other branches, never changes its row: every schedule gives bitwise the same rows,
and the same parameters, on any world size.

* ``static`` — rank r scores the contiguous share ``partition(2N·M, K, r)``, dealt to
  its devices in contiguous runs; one ``allgather_rows``. The iteration lasts as long
  as the slowest rank's share.
* ``dynamic`` — the branches are cut into chunks and ranks *claim* chunks one at a
  time from a shared counter (``transport.work_counter``: an atomic fetch-and-add on
  an MPI-3 RMA window on rank 0, which needs nothing from rank 0's process), so a
  rank that finishes early takes more. The rows, tagged with their branch index,
  are gathered with ``allgather_varying`` and put back in branch order.

Chunk size: a supervised call costs its full padded width whatever the number of
real branches in it, so there a chunk is ``--branch-batch`` branches; an episode
(RL) costs per real branch, so there chunks are smaller — about four per rank,
``ceil(2N·M / (4K))``, at most ``--branch-batch`` — which lets the counter balance
uneven episode lengths. The counter has two slots used in alternate iterations;
rank 0 resets a slot once every rank is past the gather that ends its iteration.

Why an RMA counter rather than a rank-0 dispatcher: a dispatcher must answer
requests while it is itself scoring branches (or give up a rank to the job), so
every claim would wait up to one of rank 0's chunks; a passive-target fetch-and-add
is served by the MPI library (shared memory within a node), costing microseconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from hpcars.comm import Transport, partition, shares

SCHEDULES = ("static", "dynamic")

#: (device index, global branch ids) -> message rows of those branches
ScoreFn = Callable[[int, list[int]], np.ndarray]


class StaticSchedule:
    def __init__(self, transport: Transport, branches: int, devices: int) -> None:
        self.transport = transport
        self.counts = shares(branches, transport.size)
        mine = list(partition(branches, transport.size, transport.rank))
        # a rank's branches are dealt to its devices in contiguous runs
        self.device_branches = [mine[len(mine) * i // devices : len(mine) * (i + 1) // devices] for i in range(devices)]

    def gather(self, score: ScoreFn, iteration: int) -> tuple[np.ndarray, float]:
        """Every branch's row in branch order, and the seconds spent in the collective."""
        local = np.concatenate([score(i, b) for i, b in enumerate(self.device_branches)])
        start = time.perf_counter()
        return self.transport.allgather_rows(local, self.counts), time.perf_counter() - start


class DynamicSchedule:
    def __init__(self, transport: Transport, branches: int, devices: int, chunk: int, width: int) -> None:
        self.transport = transport
        self.branches = branches
        self.devices = devices
        self.chunk = chunk
        self.chunks = math.ceil(branches / chunk)
        self.width = width  # columns of a message row
        self.counter = transport.work_counter()

    def gather(self, score: ScoreFn, iteration: int) -> tuple[np.ndarray, float]:
        """Every branch's row in branch order, and the seconds spent in the collective."""
        slot = iteration % 2
        tagged, device = [np.zeros((0, self.width + 1))], 0
        while (claimed := self.counter.claim(slot)) < self.chunks:
            ids = list(range(claimed * self.chunk, min(self.branches, (claimed + 1) * self.chunk)))
            tagged.append(np.hstack([np.asarray(ids, dtype=np.float64)[:, None], score(device, ids)]))
            device = (device + 1) % self.devices
        start = time.perf_counter()
        everything = self.transport.allgather_varying(np.concatenate(tagged))
        waited = time.perf_counter() - start
        if self.transport.rank == 0:  # every rank is past its claims on this slot
            self.counter.reset(slot)
        return everything[np.argsort(everything[:, 0], kind="stable"), 1:], waited


def make_schedule(
    kind: str, transport: Transport, branches: int, devices: int, branch_batch: int, episodic: bool, width: int
) -> StaticSchedule | DynamicSchedule:
    if kind != "dynamic":  # static; the asynchronous mode scores whole updates on its own
        return StaticSchedule(transport, branches, devices)
    chunk = min(branch_batch, math.ceil(branches / (4 * transport.size))) if episodic else branch_batch
    return DynamicSchedule(transport, branches, devices, max(1, chunk), width)
