"""``python -m hpcars.export RUN_DIR --format npz|torchscript|onnx``: the policy as one portable file.

This module is the command's door (``python -m hpcars.export``, the ``hpcars-export``
console script): it pins the thread pools before torch is imported and hands over
to ``hpcars.cli.export``, where the code lives. Names of that module are reachable
here too (``hpcars.export.main``, ...).
"""

from __future__ import annotations

import sys

from hpcars.cli import door

main, __getattr__ = door("export")

if __name__ == "__main__":
    sys.exit(main())
