"""Transport: the only module that talks MPI.

The algorithm never sees MPI; it asks the transport for a handful of collectives.
The transport only moves arrays: what their columns mean (the message schemas)
lives in ``hpcars.runtime.messages``.

* ``allgather_rows(local, counts)`` — every rank contributes ``counts[rank]`` rows of
  float64 and receives all rows in global order. Used for the per-branch rewards
  of every iteration (``messages.branch_schema``: 2N·M rows of a few scalars,
  independent of the number of model parameters) and for evaluation rows.
* ``allgather_bytes(blob)`` — a short byte string from every rank (the parameter
  checksum of the divergence guard).
* ``allmax(value)`` — the largest of one int per rank, on every rank (the
  per-iteration "stop requested?" vote: 0, or the number of the signal received).
* ``bcast(obj)`` — a small picklable object from rank 0 (start-up decisions only).
* ``allgather_varying(local)`` — like ``allgather_rows`` when no rank knows the
  others' counts in advance (one extra 8-byte gather of the counts): the dynamic
  schedule, where ranks claim chunks of branches as they go.
* ``work_counter()`` — a counter shared by the ranks of one node that any of them
  increments without another's help: ``claim(slot)`` returns the slot's previous value
  and adds one; the node's first rank ``reset(slot)``s a slot between uses. It is a
  small file in ``/dev/shm`` updated under ``flock`` (microseconds). An MPI-3 RMA
  ``Fetch_and_op`` on rank 0's window was measured first: with MPICH it completes
  only when rank 0 next enters MPI (4.4 s while rank 0 computed for 4 s; 8 ms with
  ``MPIR_CVAR_ASYNC_PROGRESS=1``, which costs a polling thread per rank) — useless
  while rank 0 is itself scoring branches. ``node_index``/``node_count`` and
  ``node_rank``/``node_size`` say where a rank sits.
* ``send(dest, rows, tag)`` / ``receive(tag)`` — point-to-point float64 rows for the
  asynchronous mode: sends never block the sender, ``receive`` returns whatever has
  arrived (possibly nothing) as (source, rows) pairs in arrival order.

Per iteration a ``static`` run makes two collectives — the rewards gather and the
4-byte stop vote — and a ``dynamic`` one three (``allgather_varying`` gathers the
row counts, 8 bytes per rank, before the rows), plus an evaluation gather every
``--eval-every`` and a checksum gather every ``--guard-every`` iterations (and before
each checkpoint). The asynchronous mode makes none per update: its rows travel
point to point (``send``/``receive``).

``SingleProcess`` is the same interface for one process (no mpirun, or mpi4py
missing). ``bytes_moved`` counts the bytes each rank received from collectives, so
the trainer can log communication per iteration.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: seconds an aborting rank waits for the launcher to forward its last output
ABORT_GRACE_S = 0.5


class Transport(Protocol):
    rank: int
    size: int
    local_rank: int
    node_rank: int  # = local_rank
    node_size: int  # ranks on this node
    node_index: int  # which node (0 .. node_count - 1)
    node_count: int
    bytes_moved: int

    def allgather_rows(self, local: np.ndarray, counts: Sequence[int]) -> np.ndarray: ...

    def allgather_bytes(self, blob: bytes) -> list[bytes]: ...

    def allmax(self, value: int) -> int: ...

    def bcast(self, obj: Any) -> Any: ...

    def allgather_varying(self, local: np.ndarray) -> np.ndarray: ...

    def work_counter(self) -> WorkCounter: ...

    def send(self, dest: int, rows: np.ndarray, tag: int) -> None: ...

    def receive(self, tag: int) -> list[tuple[int, np.ndarray]]: ...

    def abort(self, code: int) -> None: ...

    def close(self) -> None: ...


class WorkCounter(Protocol):
    def claim(self, slot: int) -> int: ...

    def reset(self, slot: int) -> None: ...

    def close(self) -> None: ...


class LocalCounter:
    """The work counter of a one-rank world."""

    def __init__(self, slots: int = 2) -> None:
        self.values = [0] * slots

    def claim(self, slot: int) -> int:
        self.values[slot] += 1
        return self.values[slot] - 1

    def reset(self, slot: int) -> None:
        self.values[slot] = 0

    def close(self) -> None:
        pass


class SingleProcess:
    """A world of one rank."""

    rank = 0
    size = 1
    local_rank = node_rank = node_index = 0
    node_size = node_count = 1

    def __init__(self) -> None:
        self.bytes_moved = 0
        self._inbox: dict[int, list[tuple[int, np.ndarray]]] = {}

    def allgather_rows(self, local: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        return np.array(local, dtype=np.float64, copy=True)

    def allgather_bytes(self, blob: bytes) -> list[bytes]:
        return [blob]

    def allmax(self, value: int) -> int:
        return int(value)

    def bcast(self, obj: Any) -> Any:
        return obj

    def allgather_varying(self, local: np.ndarray) -> np.ndarray:
        return np.array(local, dtype=np.float64, copy=True)

    def work_counter(self) -> WorkCounter:
        return LocalCounter()

    def send(self, dest: int, rows: np.ndarray, tag: int) -> None:
        self._inbox.setdefault(tag, []).append((0, np.array(rows, dtype=np.float64, copy=True)))

    def receive(self, tag: int) -> list[tuple[int, np.ndarray]]:
        return self._inbox.pop(tag, [])

    def abort(self, code: int) -> None:
        os._exit(code)

    def close(self) -> None:
        pass


class MPITransport:
    """Collectives over an mpi4py communicator."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank = self.node_rank = self.node.Get_rank()
        self.node_size = self.node.Get_size()
        leaders = comm.Split(0 if self.node_rank == 0 else MPI.UNDEFINED, key=self.rank)
        place = (leaders.Get_rank(), leaders.Get_size()) if self.node_rank == 0 else None
        self.node_index, self.node_count = self.node.bcast(place, root=0)
        if leaders != MPI.COMM_NULL:
            leaders.Free()
        self.bytes_moved = 0
        self._pending: list[Any] = []  # requests of sends not yet known to be complete

    def allgather_rows(self, local: np.ndarray, counts: Sequence[int]) -> np.ndarray:
        local = np.ascontiguousarray(local, dtype=np.float64)
        width = local.shape[1]
        if local.shape[0] != counts[self.rank]:
            raise ValueError(f"rank {self.rank} has {local.shape[0]} rows, schedule says {counts[self.rank]}")
        out = np.empty((sum(counts), width), dtype=np.float64)
        sizes = [c * width for c in counts]
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).tolist()
        self.comm.Allgatherv(local, [out, sizes, offsets, self._mpi.DOUBLE])
        self.bytes_moved += out.nbytes
        return out

    def allgather_bytes(self, blob: bytes) -> list[bytes]:
        gathered = self.comm.allgather(blob)
        self.bytes_moved += sum(len(b) for b in gathered)
        return gathered

    def allmax(self, value: int) -> int:
        out = np.zeros(1, dtype=np.int32)
        self.comm.Allreduce(np.array([value], dtype=np.int32), out, op=self._mpi.MAX)
        self.bytes_moved += out.nbytes
        return int(out[0])

    def bcast(self, obj: Any) -> Any:
        return self.comm.bcast(obj, root=0)

    def allgather_varying(self, local: np.ndarray) -> np.ndarray:
        local = np.ascontiguousarray(local, dtype=np.float64)
        counts = self.comm.allgather(int(local.shape[0]))
        self.bytes_moved += 8 * len(counts)
        return self.allgather_rows(local, counts)

    def work_counter(self) -> WorkCounter:
        name = self.comm.bcast(f"hpcars-{os.getpid()}-{time.time_ns()}" if self.rank == 0 else None, root=0)
        return NodeCounter(self.node, f"{name}-node{self.node_index}")

    def send(self, dest: int, rows: np.ndarray, tag: int) -> None:
        data = np.ascontiguousarray(rows, dtype=np.float64)
        self._pending.append((self.comm.Isend(data, dest=dest, tag=tag), data))  # keep data alive until sent
        self._pending = [(r, d) for r, d in self._pending if not r.Test()]

    def receive(self, tag: int) -> list[tuple[int, np.ndarray]]:
        """Every message with ``tag`` that has arrived. A probe that finds nothing also drives
        MPI's progress (MPICH's: a backlog can surface one message per failed probe), so the
        draining stops only after two misses in a row — not one message per call."""
        arrived: list[tuple[int, np.ndarray]] = []
        status = self._mpi.Status()
        misses = 0
        while misses < 2:
            message = self.comm.Improbe(source=self._mpi.ANY_SOURCE, tag=tag, status=status)
            if message is None:
                misses += 1
                continue
            misses = 0
            data = np.empty(status.Get_count(self._mpi.DOUBLE), dtype=np.float64)
            message.Recv(data)  # the matched message itself (Mprobe/Mrecv): no other receive can take it
            self.bytes_moved += data.nbytes
            arrived.append((status.Get_source(), data))
        return arrived

    def abort(self, code: int) -> None:
        """End every rank of the job with ``code`` — after a moment for the launcher to forward what
        this rank just wrote: MPICH's mpiexec may exit on the abort before it has passed on the
        rank's last stderr line (seen under load), and that line says why the job ended."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        time.sleep(ABORT_GRACE_S)
        self.comm.Abort(code)
        os._exit(code)  # Abort should not return; if it does, no traceback follows the one-line message

    def close(self) -> None:
        """Leave MPI cleanly (all ranks): shared-memory segments are released, so a
        requeued job that reuses this job's id cannot meet stale ones."""
        for request, _ in self._pending:
            request.Wait()
        self.comm.Barrier()
        if not self._mpi.Is_finalized():
            self._mpi.Finalize()


class NodeCounter:
    """Counter slots in a file shared by the ranks of one node (``/dev/shm``, else the temp
    folder): a claim is ``flock``, read, add one, write, unlock — no other process needs to
    do anything. The node's first rank creates the file; once every rank of the node has
    it open, the name is unlinked, so nothing is left behind even if the job dies."""

    SLOTS = 2

    def __init__(self, node: Any, name: str) -> None:
        folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        path = folder / f"{name}.counter"
        if node.Get_rank() == 0:
            path.write_bytes(bytes(8 * self.SLOTS))
        node.Barrier()
        self.fd = os.open(path, os.O_RDWR)
        node.Barrier()
        if node.Get_rank() == 0:
            path.unlink()
        atexit.register(self.close)  # a run that never calls close() still gives the descriptor back

    def close(self) -> None:
        """Give the file descriptor back (safe to call twice)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            atexit.unregister(self.close)

    def claim(self, slot: int) -> int:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            value = int.from_bytes(os.pread(self.fd, 8, 8 * slot), "little")
            os.pwrite(self.fd, (value + 1).to_bytes(8, "little"), 8 * slot)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        return value

    def reset(self, slot: int) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self.fd, bytes(8), 8 * slot)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


def make_transport() -> Transport:
    """MPI when mpi4py imports and the world has more than one rank, else one process."""
    try:
        from mpi4py import MPI
    except ImportError:
        return SingleProcess()
    if MPI.COMM_WORLD.Get_size() == 1:
        return SingleProcess()
    return MPITransport(MPI.COMM_WORLD)


def partition(total: int, size: int, rank: int) -> range:
    """Rank ``rank``'s contiguous share of ``total`` items; shares differ by at most one."""
    return range(total * rank // size, total * (rank + 1) // size)


def shares(total: int, size: int) -> list[int]:
    """How many items each rank holds under ``partition``."""
    return [len(partition(total, size, r)) for r in range(size)]
