"""``python -m hpcars.play RUN_DIR_OR_CHECKPOINT``: run a trained policy, and watch it.

This module is the command's door (``python -m hpcars.play``, the ``hpcars-play``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.play``, where the code lives. Names of that module are reachable
here too (``hpcars.play.main``, ...).
"""

from __future__ import annotations

import os
import sys

from hpcars.cli import door


def _headless() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede importing mujoco


main, __getattr__ = door("play", _headless)

if __name__ == "__main__":
    sys.exit(main())
