"""A run keeps the noise it began with: a checkpoint made before scheme 2 resumes with scheme 1.

``tests/data/scheme1-run`` is a real run directory written by hpcars before scheme 2
existed (``tests/data/scheme1-run.json`` names the commit and the command), stopped at
iteration 2 of 4; the same command run to 4 iterations without a stop ended with the
``params_sha256`` recorded there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py

from hpcars.algorithm import noise
from hpcars.run import checkpoint
from tests.conftest import checkpoint_file, run_train

DATA = Path(__file__).parent / "data"


def test_an_old_checkpoint_resumes_with_its_own_noise_bitwise(tmp_path):
    expected = json.loads((DATA / "scheme1-run.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(DATA / "scheme1-run", run)
    assert checkpoint.read(checkpoint_file(run)).noise_scheme == noise.SCHEME_1
    done = run_train(["--resume", str(run), "--iterations", "4"])
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 4 and summary["params_sha256"] == expected["params_sha256_after_4_uninterrupted"]
    assert checkpoint.read(checkpoint_file(run)).noise_scheme == noise.SCHEME_1  # and stays with it


def test_fresh_runs_use_the_new_scheme_and_an_unknown_one_is_refused(tmp_path):
    run = tmp_path / "run"
    assert run_train(["--run-dir", str(run), "--iterations", "2", "--checkpoint-every", "2"]).returncode == 0
    path = checkpoint_file(run)
    assert checkpoint.read(path).noise_scheme == noise.DEFAULT_SCHEME == noise.SCHEME_2
    with h5py.File(path, "r+") as f:
        f.attrs["noise_scheme"] = "gauss/9"
    before = path.read_bytes()
    done = run_train(["--resume", str(run), "--iterations", "4"])
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "noise scheme 'gauss/9' is unknown to this hpcars (known: splitmix64-boxmuller/1, splitmix64-boxmuller24/2)"
    )
    assert path.read_bytes() == before
