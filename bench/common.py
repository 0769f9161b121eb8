"""What every bench shares: its ``--smoke`` option, its last line, and the launcher.

* ``parse(parser, SMOKE)`` adds ``--smoke`` (tiny sizes, seconds of run time: the test suite runs
  every bench that way, so none rots) and, when it is given, makes ``SMOKE``'s values the defaults
  — options given on the command line still win.
* ``emit(result)`` prints the bench's figures as one JSON object, its last line.
* ``mpirun(ranks)`` is the launcher beside this interpreter (the venv's MPICH), else the one on PATH;
  ``worker(script, spec, ranks)`` runs a bench's own ``--worker`` in a fresh process under it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes, seconds of run time: {smoke}")
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**smoke)
    return parser.parse_args()


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def mpirun(ranks: int) -> list[str]:
    beside = Path(sys.executable).parent / "mpirun"
    return [str(beside if beside.exists() else "mpirun"), "-n", str(ranks)]


def worker(script: str, spec: dict[str, Any], ranks: int = 1) -> subprocess.CompletedProcess:
    """``script --worker SPEC`` in a fresh process — under ``mpirun -n ranks`` when ranks > 1 — with one
    thread per rank (so each process's peak RSS and timings are its own)."""
    launch = mpirun(ranks) if ranks > 1 else []
    return subprocess.run(
        [*launch, sys.executable, script, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
