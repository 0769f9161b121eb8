"""One thread per rank: the thread pools pinned by the entry points, never by an import.

Under ``mpirun -n K`` every rank is its own process; left alone, torch, OpenMP, MKL
and OpenBLAS would each start one thread per core in every rank, K times
oversubscribing the node. ``pin_threads()`` sets ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` (each only where the user has not
set it) and torch's intra-op thread count. The command-line tools call it first
thing, before torch is imported; a library user calls it from their own driver
script, or not at all (importing hpcars changes no thread count).
"""

from __future__ import annotations

import os

POOLS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_threads(threads: int | None = None) -> int:
    """Pin the thread pools to ``threads`` (default: ``$OMP_NUM_THREADS``, else 1); returns it.

    Environment variables the user set are kept (they are read by the pools when torch
    is first imported, so call this before that); torch's own count is set either way."""
    if threads is None:
        threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    if threads < 1:
        raise ValueError(f"threads: must be at least 1 (got {threads})")
    for pool in POOLS:
        os.environ.setdefault(pool, str(threads))
    import torch

    torch.set_num_threads(threads)
    return threads
