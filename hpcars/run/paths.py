"""Checks on user-given paths, so a bad one is a one-line error before any work.

Each function raises ``PathProblem`` whose text names the path and the operating
system's reason ("Permission denied", "Not a directory", ...); callers add the
option it came from (``--run-dir: cannot write in /proc/x: ...``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hpcars.errors import PathProblem


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def writable_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and check a file can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PathProblem(f"cannot create {path}: a file of that name exists") from None
    except OSError as err:
        raise PathProblem(f"cannot create {path}: {_reason(err)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".hpcars-write-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PathProblem(f"cannot write in {path}: {_reason(err)}") from None
    return path


def read_text(path: Path) -> str:
    """The UTF-8 text of a file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PathProblem(f"no such file: {path}") from None
    except IsADirectoryError:
        raise PathProblem(f"{path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise PathProblem(f"{path} is not UTF-8 text") from None
    except OSError as err:
        raise PathProblem(f"cannot read {path}: {_reason(err)}") from None
