from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a small V2-t Hopper run whose episodes end at different times (uneven work per rank)
HOPPER_V2 = [
    "--task",
    "Hopper-v5",
    "--variant",
    "v2",
    "--directions",
    "5",
    "--top-directions",
    "3",
    "--iterations",
    "4",
    "--eval-every",
    "2",
    "--eval-episodes",
    "3",
    "--shift",
    "1",
    "--branch-batch",
    "4",
    "--guard-every",
    "1",
]
BIN = Path(sys.executable).parent


def mpirun() -> str:
    found = shutil.which("mpirun", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip("no mpirun: install the dev extra (mpich wheel)")
    return found


def run_cli(args: list[str], ranks: int = 1, timeout: float = 180, module: str = "hpcars.train", cwd: Path = ROOT):
    """Run an hpcars command (under mpirun when ranks > 1) in ``cwd``; a hang fails by timeout."""
    cmd = [sys.executable, "-m", module, *args]
    if ranks > 1:
        cmd = [mpirun(), "-n", str(ranks), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def run_train(args: list[str], ranks: int = 1, timeout: float = 180) -> subprocess.CompletedProcess:
    """``hpcars.train ARGS`` on ``ranks`` ranks: in this process for one rank (no interpreter
    and torch start-up to pay), under mpirun otherwise. Same result object as ``run_cli``."""
    if ranks > 1:
        return run_cli(args, ranks=ranks, timeout=timeout)
    from hpcars.cli.train import main
    from hpcars.runtime.comm import SingleProcess

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args, transport=SingleProcess())
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def train_in_process(args: list[str], capsys) -> tuple[int, list[str]]:
    """``hpcars.train``'s command line run in this process on one rank: (exit status,
    stderr lines). Cheaper than a subprocess for tests of input handling."""
    from hpcars.cli.train import main
    from hpcars.runtime.comm import SingleProcess

    status = main(args, transport=SingleProcess())
    return status, capsys.readouterr().err.strip().splitlines()


def inspect_json(run_dir: Path) -> dict:
    """What ``hpcars-inspect RUN_DIR --json`` prints, computed in this process."""
    from hpcars.cli.inspect import read_run

    return json.loads(json.dumps(read_run(Path(run_dir))))


def checkpoint_file(run_dir: Path) -> Path:
    """The latest checkpoint of a run directory."""
    files = sorted((Path(run_dir) / "checkpoints").glob("ckpt-*.h5"))
    assert files, f"no checkpoint in {run_dir}"
    return files[-1]
