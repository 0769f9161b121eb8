"""End-to-end runs on one rank, in process and through the CLI."""

import csv
import io
import json

import h5py
import pytest

from hpcars.config import TrainConfig
from hpcars.run.loop import run
from hpcars.runtime.comm import SingleProcess
from tests.conftest import checkpoint_file, inspect_json, run_cli


def test_regression_loss_falls_by_a_large_factor(tmp_path):
    cfg = TrainConfig(iterations=600, run_dir=str(tmp_path / "r"), device="cpu")
    out = io.StringIO()
    trainer = run(cfg, SingleProcess(), out=out).trainer
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 600
    first = float(rows[9]["eval_loss"])
    last = float(rows[-1]["eval_loss"])
    assert last < first / 100, (first, last)
    assert float(rows[-1]["reward_mean"]) > float(rows[0]["reward_mean"])
    assert "learned: y =" in out.getvalue() and "params_sha256" in out.getvalue()
    info = inspect_json(tmp_path / "r")
    assert info["params_sha256"] == trainer.params_sha256()
    assert info["iteration"] == 600 and info["world_size"] == 1 and info["sha256_ok"]


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_digits_learns(tmp_path, variant):
    cfg = TrainConfig(
        task="digits",
        iterations=120,
        directions=16,
        eval_every=60,
        variant=variant,
        run_dir=str(tmp_path / variant),
        device="cpu",
    )
    run(cfg, SingleProcess(), out=io.StringIO())
    rows = list(csv.DictReader((tmp_path / variant / "metrics.csv").read_text().splitlines()))
    assert float(rows[-1]["eval_accuracy"]) > 0.6  # from ~0.1 at random init
    with h5py.File(checkpoint_file(tmp_path / variant)) as f:
        names = set(f["members/00000"])
        assert names == (
            {"0.weight", "0.bias", "2.weight", "2.bias"}
            if variant == "v1"
            else {"inner.0.weight", "inner.0.bias", "inner.2.weight", "inner.2.bias"}
        )
        assert ("obs_stat" in f) == (variant == "v2")


def test_main_job_defaults_through_cli(tmp_path):
    done = run_cli(["--iterations", "40", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 0, done.stderr
    assert "done: 40 iterations" in done.stdout and "learned: y =" in done.stdout
    assert checkpoint_file(tmp_path / "r").exists()
    inspected = run_cli([str(tmp_path / "r"), "--json"], module="hpcars.inspect")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout) == inspect_json(tmp_path / "r")
