"""hpcars: Augmented Random Search and population random search as MPI batch jobs.

Public names for your own tasks (``--task package.module:factory``)::

    from hpcars import SupervisedProblem, Objective, ObjectiveContext

They are imported lazily, so ``python -m hpcars.train`` can pin the thread pools
before torch is first imported. ``hpcars.__version__`` is the installed
distribution's version (``importlib.metadata``), or, in a checkout that is not
installed, the one in its ``pyproject.toml``; it too is looked up on first use, so
importing hpcars does nothing but define names.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["Objective", "ObjectiveContext", "SupervisedProblem", "__version__"]

#: what ``__version__`` is when neither the metadata nor a ``pyproject.toml`` says
UNKNOWN_VERSION = "0+unknown"


@functools.cache
def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("hpcars")
    except importlib.metadata.PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return UNKNOWN_VERSION
    version = project.get("version") if project.get("name") == "hpcars" else None
    return version if isinstance(version, str) else UNKNOWN_VERSION


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in __all__:
        from hpcars import problems

        return getattr(problems, name)
    raise AttributeError(f"module 'hpcars' has no attribute {name!r}")
