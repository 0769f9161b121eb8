"""hpcars' version: the installed distribution's, or in a checkout that is not installed, its
``pyproject.toml``'s (``hpcars.__version__``). A module of the bottom layer: it imports nothing of
hpcars, so the provenance of a run (``hpcars.run.provenance``) can record it without climbing up
to the package's door."""

from __future__ import annotations

import functools

#: what ``version()`` is when neither the metadata nor a ``pyproject.toml`` says
UNKNOWN_VERSION = "0+unknown"


@functools.cache
def version() -> str:
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
    found = project.get("version") if project.get("name") == "hpcars" else None
    return found if isinstance(found, str) else UNKNOWN_VERSION
