"""Which branches a rank scores in an iteration, and how every branch's row reaches every rank.

A branch's reward depends only on (seed, iteration, branch) and is computed in a
batched call of exactly ``--branch-batch`` rows (a short call is padded), whose
kernels treat every row on its own. So *which* rank scores a branch, and with which
other branches, never changes its row: every schedule gives bitwise the same rows,
and the same parameters, on any world size.

* ``static`` — rank r scores the contiguous share ``partition(2N·M, K, r)``, dealt to
  its devices in contiguous runs; one ``allgather_rows``. The iteration lasts as long
  as the slowest rank's share.
* ``dynamic`` — each node takes a contiguous share of the branches (as ``static``
  does per rank), cut into chunks that the node's ranks *claim* one at a time from a
  counter they share (``transport.work_counter``: a file in ``/dev/shm`` updated under
  ``flock``, which needs nothing from any other process), so a rank that finishes
  early takes more. The rows, tagged with their branch index, are gathered with
  ``allgather_varying`` and put back in branch order. Across nodes the shares stay
  fixed: balancing a slow *node* would need a counter every node can reach without
  its owner's help, and MPI's passive RMA did not give that (``hpcars.runtime.comm``).

Chunk sizes: a supervised call costs its full padded width whatever the number of
real branches in it, so there every chunk is ``--branch-batch`` branches. An episode
(RL) costs per real branch plus a per-step overhead per call (the batched policy
call, the lockstep bookkeeping), so there chunks follow *guided self-scheduling*
(Polychronopoulos & Kuck 1987): chunk k holds ceil(remaining / K) branches, at
least ceil(2N·M / (4K)) and at most ``--branch-batch`` — large first chunks keep the
per-call overhead low, the small last ones balance uneven episode lengths and slow
ranks. The chunk table is fixed in advance (a function of 2N·M, K and the batch),
so a claim is one increment. The counter has two slots used in alternate
iterations; rank 0 resets a slot once every rank is past the gather that ends its
iteration.

Why not a rank-0 dispatcher: it must answer requests while it is itself scoring
branches (or give up a rank to the job, or spin a polling thread on a core the job
needs), so a claim would wait up to one of rank 0's chunks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from hpcars.runtime.comm import Transport, WorkCounter, partition, shares

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

    def close(self) -> None:
        pass


def guided_chunks(branches: int, workers: int, smallest: int, largest: int) -> list[range]:
    """Guided self-scheduling: chunk sizes ceil(remaining / workers), clamped to [smallest, largest]."""
    chunks, start = [], 0
    while start < branches:
        size = min(largest, max(smallest, math.ceil((branches - start) / workers)), branches - start)
        chunks.append(range(start, start + size))
        start += size
    return chunks


class DynamicSchedule:
    def __init__(self, transport: Transport, chunks: list[range], devices: int, width: int) -> None:
        self.transport = transport
        self.chunks = chunks
        self.devices = devices
        self.width = width  # columns of a message row
        # made at the first gather, which every rank reaches together: building a schedule is
        # no collective, so a rank that refuses its input first cannot leave the others in one
        self.counter: WorkCounter | None = None

    def gather(self, score: ScoreFn, iteration: int) -> tuple[np.ndarray, float]:
        """Every branch's row in branch order, and the seconds spent in the collective."""
        if self.counter is None:
            self.counter = self.transport.work_counter()
        slot = iteration % 2
        tagged, device = [np.zeros((0, self.width + 1))], 0
        while (claimed := self.counter.claim(slot)) < len(self.chunks):
            ids = list(self.chunks[claimed])
            tagged.append(np.hstack([np.asarray(ids, dtype=np.float64)[:, None], score(device, ids)]))
            device = (device + 1) % self.devices
        start = time.perf_counter()
        everything = self.transport.allgather_varying(np.concatenate(tagged))
        waited = time.perf_counter() - start
        if self.transport.node_rank == 0:  # every rank is past its claims on this slot
            self.counter.reset(slot)
        return everything[np.argsort(everything[:, 0], kind="stable"), 1:], waited

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()


def make_schedule(
    kind: str, transport: Transport, branches: int, devices: int, branch_batch: int, episodic: bool, width: int
) -> StaticSchedule | DynamicSchedule:
    if kind != "dynamic":  # static; the asynchronous mode scores whole updates on its own
        return StaticSchedule(transport, branches, devices)
    share = partition(branches, transport.node_count, transport.node_index)  # this node's branches
    workers = transport.node_size
    if episodic:
        chunks = guided_chunks(len(share), workers, math.ceil(len(share) / (4 * workers)), branch_batch)
    else:
        chunks = guided_chunks(len(share), 1, branch_batch, branch_batch)  # whole calls
    return DynamicSchedule(
        transport, [range(share.start + c.start, share.start + c.stop) for c in chunks], devices, width
    )
