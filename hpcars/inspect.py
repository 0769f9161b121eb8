"""``python -m hpcars.inspect RUN_DIR_OR_CHECKPOINT [--json]``: what a run holds.

This module is the command's door (``python -m hpcars.inspect``, the ``hpcars-inspect``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.inspect``, where the code lives. Names of that module are reachable
here too (``hpcars.inspect.main``, ...).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def main(*args: Any, **kwargs: Any) -> int:
    """Pin the thread pools, then run ``hpcars.cli.inspect.main``."""
    from hpcars.threads import pin_threads

    pin_threads()
    return importlib.import_module("hpcars.cli.inspect").main(*args, **kwargs)


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("hpcars.cli.inspect"), name)


if __name__ == "__main__":
    sys.exit(main())
