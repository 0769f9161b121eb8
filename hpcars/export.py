"""``python -m hpcars.export RUN_DIR --format npz|torchscript|onnx``: the policy as one portable file.

This module is the command's door (``python -m hpcars.export``, the ``hpcars-export``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.export``, where the code lives. Names of that module are reachable
here too (``hpcars.export.main``, ...).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def main(*args: Any, **kwargs: Any) -> int:
    """Pin the thread pools, then run ``hpcars.cli.export.main``."""
    from hpcars.threads import pin_threads

    pin_threads()
    return importlib.import_module("hpcars.cli.export").main(*args, **kwargs)


def __getattr__(name: str) -> Any:
    return getattr(importlib.import_module("hpcars.cli.export"), name)


if __name__ == "__main__":
    sys.exit(main())
