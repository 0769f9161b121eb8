"""A run keeps the noise it began with: a checkpoint made before scheme 2 resumes with scheme 1.

``tests/data/scheme1-run`` is a real run directory written by hpcars before scheme 2
existed (``tests/data/scheme1-run.json`` names the commit and the command), stopped at
iteration 2 of 4. It was made on another machine, and its parameters are float32 matrix
products whose last bits depend on the CPU's BLAS kernels, so no test here compares against
a hash recorded there. What is portable is tested instead:

* its noise: the directions its resume draws are scheme 1's, by the independent NumPy
  reference (the noise's bits are machine-independent by construction);
* its resume: a scheme-1 run made now, on this machine (fresh runs draw scheme 2; the test
  hook ``scheme_1_for_fresh_runs`` makes them draw scheme 1, as hpcars did before), stopped
  and resumed, ends with the bits of the same run uninterrupted — and the old checkpoint
  resumed to iteration 4 lands where that run does, up to the last bits of the other
  machine's first two iterations, far from where scheme 2's noise would take it.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpcars.algorithm import noise
from hpcars.run import checkpoint, engine
from tests import reference
from tests.conftest import checkpoint_file, run_train

DATA = Path(__file__).parent / "data"
#: the recorded run's command (scheme1-run.json), without its run directory
COMMAND = ["--iterations", "2", "--checkpoint-every", "2", "--seed", "3", "--directions", "8", "--eval-every", "1"]


@pytest.fixture
def scheme_1_for_fresh_runs(monkeypatch):
    """Test hook: a fresh run (in this process) draws scheme 1; a resumed one still takes its checkpoint's."""
    monkeypatch.setattr(engine, "NoiseSource", functools.partial(noise.NoiseSource, scheme=noise.SCHEME_1))


def _theta(run_dir: Path) -> np.ndarray:
    ckpt = checkpoint.read(checkpoint_file(run_dir))
    return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in ckpt.members[0].params.values()])


def _resume(run_dir: Path, iterations: int = 4) -> dict:
    done = run_train(["--resume", str(run_dir), "--iterations", str(iterations)])
    assert done.returncode == 0, done.stderr
    return json.loads((run_dir / "summary.json").read_text())


def test_the_old_runs_directions_are_scheme_1_by_the_reference():
    ckpt = checkpoint.read(checkpoint_file(DATA / "scheme1-run"))
    assert ckpt.noise_scheme == noise.SCHEME_1
    seed, size = ckpt.config["seed"], sum(np.asarray(v).size for v in ckpt.members[0].params.values())
    drawn = noise.NoiseSource(seed, ckpt.noise_scheme).directions(ckpt.iteration, 0, range(8), size).numpy()
    for k, row in enumerate(drawn):
        np.testing.assert_allclose(row, reference.direction_v1(seed, ckpt.iteration, 0, k, size), rtol=1e-6, atol=1e-7)


def test_a_scheme_1_run_resumes_bitwise_and_the_old_checkpoint_resumes_with_its_own_noise(
    tmp_path, scheme_1_for_fresh_runs
):
    # a scheme-1 run made here, uninterrupted
    whole = tmp_path / "whole"
    assert run_train([*COMMAND[:1], "4", *COMMAND[2:], "--run-dir", str(whole)]).returncode == 0
    assert checkpoint.read(checkpoint_file(whole)).noise_scheme == noise.SCHEME_1
    expected = json.loads((whole / "summary.json").read_text())["params_sha256"]

    # the same, stopped at iteration 2 and resumed: the resume takes the checkpoint's scheme
    stopped = tmp_path / "stopped"
    assert run_train([*COMMAND, "--run-dir", str(stopped)]).returncode == 0
    with pytest.MonkeyPatch.context() as hook_off:
        hook_off.setattr(engine, "NoiseSource", noise.NoiseSource)  # the resume as any user runs it
        assert _resume(stopped)["params_sha256"] == expected
    assert checkpoint.read(checkpoint_file(stopped)).noise_scheme == noise.SCHEME_1

    # the old checkpoint (another machine's first two iterations), resumed here to iteration 4
    old, other = tmp_path / "old", tmp_path / "as-if-scheme-2"
    shutil.copytree(DATA / "scheme1-run", old)
    shutil.copytree(DATA / "scheme1-run", other)
    with h5py.File(checkpoint_file(other), "r+") as f:
        f.attrs["noise_scheme"] = noise.SCHEME_2  # the same θ at iteration 2, continued with the other noise
    with pytest.MonkeyPatch.context() as hook_off:
        hook_off.setattr(engine, "NoiseSource", noise.NoiseSource)
        assert _resume(old)["iterations"] == 4 and _resume(other)["iterations"] == 4
    assert checkpoint.read(checkpoint_file(old)).noise_scheme == noise.SCHEME_1  # and stays with it
    here, there, wrong = _theta(whole), _theta(old), _theta(other)
    assert np.abs(there - here).max() < 1e-3 * np.abs(wrong - here).max(), (there - here, wrong - here)


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
