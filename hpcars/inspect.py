"""``python -m hpcars.inspect RUN_DIR_OR_CHECKPOINT [--json]``: what a run holds.

This module is the command's door (``python -m hpcars.inspect``, the ``hpcars-inspect``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.inspect``, where the code lives. Names of that module are reachable
here too (``hpcars.inspect.main``, ...).
"""

from __future__ import annotations

import sys

from hpcars.cli import door

main, __getattr__ = door("inspect")

if __name__ == "__main__":
    sys.exit(main())
