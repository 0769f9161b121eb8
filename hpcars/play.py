"""``python -m hpcars.play RUN_DIR_OR_CHECKPOINT``: run a trained policy, and watch it.

This module is the command's door (``python -m hpcars.play``, the ``hpcars-play``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.play``, where the code lives. Names of that module are reachable
here too (``hpcars.play.main``, ...).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def main(*args: Any, **kwargs: Any) -> int:
    """Pin the thread pools, then run ``hpcars.cli.play.main``."""
    import os

    from hpcars.threads import pin_threads

    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede importing mujoco
    pin_threads()
    return importlib.import_module("hpcars.cli.play").main(*args, **kwargs)


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("hpcars.cli.play"), name)


if __name__ == "__main__":
    sys.exit(main())
