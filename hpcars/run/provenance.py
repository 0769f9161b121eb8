"""What a run was made with: hpcars' version and commit, and the versions its bits depend on.

hpcars promises the same parameters, bit for bit, on any world size and across a
resume — for the same software. Kernels, random number formats and simulators change
between releases of torch, NumPy, MPI, Gymnasium, MuJoCo and EnvPool, so
``config.json``, ``summary.json`` and every checkpoint record ``versions()``;
``hpcars-inspect`` shows them, and a resume under different versions says so in one
line (``differences``).

Versions come from the installed packages' metadata (``importlib.metadata``; hpcars'
own is ``hpcars.__version__``, which falls back to ``pyproject.toml`` in a checkout
that is not installed): nothing is imported for it. The MPI library's own version is
read only if ``mpi4py.MPI`` is already loaded (importing it would initialise MPI).
The git commit is recorded when hpcars runs from a checkout (``+dirty`` when tracked
files differ from it): two ``git`` calls, once per process, only when the package's
parent folder holds ``.git``; None outside a checkout, without git, or when git fails.

**What "the same bits" means across machines.** The world size never changes a result, and
neither does a resume — on one kind of machine. Across machines the parameters' last bits
can differ: a float32 matrix product's rounding depends on the kernel the BLAS picks for the
CPU (its instruction set, its vendor: MKL takes other paths on AMD than on Intel) and on the
GPU model. So the provenance also records the machine (``MACHINE``): the CPU's vendor and
model, the instruction set torch's own kernels use (``torch.backends.cpu.get_cpu_capability``,
which ``ATEN_CPU_CAPABILITY`` can lower), the BLAS torch was built with and any of its
switches set in the environment (``MKL_ENABLE_INSTRUCTIONS``, ``MKL_CBWR``, ...), and the GPU
where one is used. A resume or a replay on a machine that differs in any of them says in one
line that bits may differ. The noise (``hpcars.algorithm.noise``) is the exception: its bits
are the same on every machine by construction.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from hpcars.version import version

#: the packages whose versions can change a run's bits (distribution names): a Hugging Face model's
#: weights, tokens and dequantised values come from transformers, tokenizers and gguf
PACKAGES = ("torch", "numpy", "mpi4py", "gymnasium", "mujoco", "envpool", "h5py", "transformers", "tokenizers", "gguf")
#: what ``differences`` compares (the commit is reported, not compared: a fix elsewhere changes it);
#: ``model_sha256``: the model file a language task loads (``hpcars.tasks.hf_lm``)
COMPARED = ("hpcars", *PACKAGES, "mpi_library", "model_sha256")
#: the machine a run's bits depend on (see the module's text); ``machine_differences`` compares them
MACHINE = ("cpu", "cpu_capability", "blas", "gpu")
#: environment variables that move MKL's or OpenBLAS's kernels to another path (recorded with the BLAS)
BLAS_SWITCHES = ("MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "MKL_DEBUG_CPU_TYPE", "OPENBLAS_CORETYPE")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _mpi_library() -> str | None:
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is None:
        return None
    lines = mpi.Get_library_version().splitlines()
    return " ".join(lines[0].split()) if lines and lines[0].strip() else None  # 'MPICH Version:\t4.2.0' -> one space


def _git_commit() -> str | None:
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


@functools.cache
def _static() -> dict[str, str | None]:
    return {
        "hpcars": version(),
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        **{name: _version(name) for name in PACKAGES},
    }


def _cpu() -> str | None:
    """'VENDOR MODEL' from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), " ".join(value.split()))
    except OSError:
        pass
    found = " ".join(v for v in (fields.get("vendor_id"), fields.get("model name")) if v)
    return found or platform.processor() or platform.machine() or None


def _blas(torch: object) -> str | None:
    """The BLAS torch was built with ('mkl 2024.2', 'open', ...) and the switches set for it."""
    try:
        config = torch.__config__.show()  # type: ignore[attr-defined]
    except Exception:  # an unusual build: nothing to record
        return None
    kind = re.search(r"BLAS_INFO=(\w+)", config)
    name = kind.group(1) if kind else None
    version = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    if name == "mkl" and version:
        name = f"mkl {version.group(1)}"
    switches = [f"{key}={os.environ[key]}" for key in BLAS_SWITCHES if os.environ.get(key)]
    return " ".join([name or "unknown", *switches]) if name or switches else None


@functools.cache
def _machine_static() -> dict[str, str | None]:
    import torch

    return {"cpu": _cpu(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": _blas(torch)}


def machine() -> dict[str, str | None]:
    """``MACHINE``: the CPU, torch's CPU capability, the BLAS (and its switches), and the GPU where
    CUDA is in use (None where not)."""
    import torch

    gpu = None
    if torch.cuda.is_initialized():
        gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    return {**_machine_static(), "gpu": gpu}


def versions() -> dict[str, str | None]:
    """hpcars' version and commit, Python's, the versions of ``PACKAGES`` and the MPI library
    (None: not installed / not loaded), and the ``machine()``."""
    return {**_static(), "mpi_library": _mpi_library(), **machine()}


def differences(saved: dict[str, str | None] | None, now: dict[str, str | None]) -> list[str]:
    """``name old -> new`` for each compared version that differs (nothing for an old
    checkpoint without provenance, or a library not loaded now)."""
    return _changed(saved, now, COMPARED)


def machine_differences(saved: dict[str, str | None] | None, now: dict[str, str | None]) -> list[str]:
    """``name old -> new`` for each part of the ``MACHINE`` that differs (a GPU counts where either
    side used one; nothing for a checkpoint made before the machine was recorded)."""
    if not saved or not any(name in saved for name in MACHINE):
        return []
    changed = _changed(saved, now, MACHINE[:-1])
    if (saved.get("gpu") or now.get("gpu")) and saved.get("gpu") != now.get("gpu"):
        changed.append(f"gpu {saved.get('gpu')} -> {now.get('gpu')}")
    return changed


def _changed(saved: dict[str, str | None] | None, now: dict[str, str | None], names: tuple[str, ...]) -> list[str]:
    if not saved:
        return []
    return [
        f"{name} {saved.get(name)} -> {now.get(name)}"
        for name in names
        if now.get(name) is not None and saved.get(name) is not None and saved.get(name) != now.get(name)
    ]


def continuation_warning(saved: dict[str, str | None] | None, doing: str) -> str | None:
    """The one line to warn with when a run is continued (``doing``: 'resuming', 'replaying')
    under other software or on another kind of machine than ``saved`` records; None if neither."""
    now = versions()
    software, hardware = differences(saved, now), machine_differences(saved, now)
    if not software and not hardware:
        return None
    parts = []
    if software:
        parts.append(f"under other versions than the checkpoint's ({'; '.join(software)})")
    if hardware:
        parts.append(f"on another kind of machine ({'; '.join(hardware)})")
    return (
        f"{doing} {' and '.join(parts)}: the run goes on, but its bits need not match an uninterrupted run "
        "on one machine"
    )
