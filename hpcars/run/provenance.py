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
"""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import hpcars

#: the packages whose versions can change a run's bits (distribution names)
PACKAGES = ("torch", "numpy", "mpi4py", "gymnasium", "mujoco", "envpool", "h5py")
#: what ``differences`` compares (the commit is reported, not compared: a fix elsewhere changes it)
COMPARED = ("hpcars", *PACKAGES, "mpi_library")


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
        "hpcars": hpcars.__version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        **{name: _version(name) for name in PACKAGES},
    }


def versions() -> dict[str, str | None]:
    """hpcars' version and commit, Python's, and the versions of ``PACKAGES`` and the MPI library
    (None: not installed / not loaded)."""
    return {**_static(), "mpi_library": _mpi_library()}


def differences(saved: dict[str, str | None] | None, now: dict[str, str | None]) -> list[str]:
    """``name old -> new`` for each compared version that differs (nothing for an old
    checkpoint without provenance, or a library not loaded now)."""
    if not saved:
        return []
    return [
        f"{name} {saved.get(name)} -> {now.get(name)}"
        for name in COMPARED
        if now.get(name) is not None and saved.get(name) is not None and saved.get(name) != now.get(name)
    ]
