"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

This module is the command's door (``python -m hpcars.train``, the ``hpcars-train``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.train``, where the code lives. Names of that module are reachable
here too (``hpcars.train.main``, ...).
"""

from __future__ import annotations

import sys

from hpcars.cli import door

main, __getattr__ = door("train")

if __name__ == "__main__":
    sys.exit(main())
