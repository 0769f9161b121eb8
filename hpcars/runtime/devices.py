"""Which devices a rank drives.

``auto``: with GPUs visible, node-local rank r takes ``devices_per_rank`` GPUs
starting at ``(r * devices_per_rank) % gpu_count`` (so 4 ranks on a 4-GPU node get
one each; under Slurm's ``--gpus-per-task`` each rank sees one GPU and takes it);
with none, the CPU. ``cpu`` forces the CPU; ``cuda`` is ``auto`` that refuses to fall
back; an explicit comma list (``cuda:0,cuda:1``) is used as written on every rank.
The first device is the rank's primary device: θ lives there and the update is
computed there.

``branch_memory``: how many bytes a rank's dense branches may take (``--branch-memory``;
``hpcars.algorithm.perturbation.dense`` fits its batched calls and update blocks in them).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hpcars.errors import ConfigError


def choose_devices(spec: str, local_rank: int, per_rank: int) -> list[torch.device]:
    if spec == "cpu":
        return [torch.device("cpu")]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if spec in ("auto", "cuda"):
        if gpus == 0:
            if spec == "cuda":
                raise ConfigError("--device", "cuda asked for but no CUDA device is visible; use auto or cpu")
            return [torch.device("cpu")]
        first = (local_rank * per_rank) % gpus
        return [torch.device("cuda", (first + i) % gpus) for i in range(min(per_rank, gpus))]
    devices = []
    for part in spec.split(","):
        try:
            device = torch.device(part.strip())
        except RuntimeError:
            raise ConfigError(
                "--device", f"must be auto, cpu, cuda or a list like cuda:0,cuda:1 (got {spec!r})"
            ) from None
        if device.type == "cuda" and (device.index or 0) >= gpus:
            raise ConfigError("--device", f"{part} is not visible here ({gpus} CUDA devices)")
        if device.type not in ("cpu", "cuda"):
            raise ConfigError("--device", f"must be auto, cpu, cuda or a list like cuda:0,cuda:1 (got {spec!r})")
        devices.append(device)
    return devices


def node_memory() -> int:
    """This node's memory in bytes, or the container's limit when that is lower (cgroup v2 or v1)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def branch_memory(gigabytes: float, device: torch.device) -> int:
    """``--branch-memory`` in bytes: as given, or (0) a quarter of the node's memory per core — of
    the GPU's memory on a CUDA device. Never the rank's share of the node: a default that followed
    the world size would let the world size change the calls' width, and with it the bits."""
    if gigabytes > 0:
        return int(gigabytes * 2**30)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory) // 4
    return node_memory() // (os.cpu_count() or 1) // 4
