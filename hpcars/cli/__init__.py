"""The command-line tools: ``train``, ``inspect``, ``play``, ``export`` (and their options);
``sweep`` and ``report`` live in ``hpcars.jobs`` and ``hpcars.analysis``. Each ``main``
pins the thread pools before torch is imported (``hpcars.threads``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def door(tool: str, before: Callable[[], None] | None = None) -> tuple[Callable[..., int], Callable[[str], Any]]:
    """``(main, __getattr__)`` for ``hpcars/<tool>.py``: main pins the threads (after ``before``,
    e.g. an environment variable that must precede an import) and runs ``hpcars.cli.<tool>.main``;
    __getattr__ reaches that module's other names. Nothing is imported until they are called."""

    def main(*args: Any, **kwargs: Any) -> int:
        from hpcars.threads import pin_threads

        if before is not None:
            before()
        pin_threads()
        return importlib.import_module(f"hpcars.cli.{tool}").main(*args, **kwargs)

    def getattr_(name: str) -> Any:
        return getattr(importlib.import_module(f"hpcars.cli.{tool}"), name)

    return main, getattr_
