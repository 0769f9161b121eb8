"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

This module is the command's door (``python -m hpcars.train``, the ``hpcars-train``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.train``, where the code lives. Names of that module are reachable
here too (``hpcars.train.main``, ...).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def main(*args: Any, **kwargs: Any) -> int:
    """Pin the thread pools, then run ``hpcars.cli.train.main``."""
    from hpcars.threads import pin_threads

    pin_threads()
    return importlib.import_module("hpcars.cli.train").main(*args, **kwargs)


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("hpcars.cli.train"), name)


if __name__ == "__main__":
    sys.exit(main())
