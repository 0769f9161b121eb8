"""Dynamic branch scheduling and the asynchronous mode (with its exact replay)."""

from __future__ import annotations

import csv
import os
import signal
import time

import numpy as np
import pytest

from hpcars.run import checkpoint
from tests.conftest import HOPPER_V2, checkpoint_file, inspect_json, run_train
from tests.test_checkpoint import _rank_pids, _start_long_run

DIGITS = ["--task", "digits", "--variant", "v2", "--directions", "5", "--branch-batch", "4", "--eval-every", "5"]


def _log(run_dir) -> dict[str, np.ndarray]:
    return checkpoint.read(checkpoint_file(run_dir)).async_log


def test_dynamic_schedule_equals_static_on_1_and_3_ranks(tmp_path):
    """Hopper episodes end at different times: the claimed chunks differ run to run, the parameters never."""
    hashes = {}
    for schedule, ranks in (("static", 1), ("dynamic", 1), ("dynamic", 3)):
        run_dir = tmp_path / f"{schedule}{ranks}"
        done = run_train([*HOPPER_V2, "--schedule", schedule, "--run-dir", str(run_dir)], ranks=ranks)
        assert done.returncode == 0, done.stderr
        hashes[(schedule, ranks)] = inspect_json(run_dir)["params_sha256"]
    assert len(set(hashes.values())) == 1, hashes


def test_async_on_one_rank_is_synchronous_ars(tmp_path):
    for schedule in ("static", "async"):
        done = run_train([*DIGITS, "--iterations", "12", "--schedule", schedule, "--run-dir", str(tmp_path / schedule)])
        assert done.returncode == 0, done.stderr
    assert inspect_json(tmp_path / "static")["params_sha256"] == inspect_json(tmp_path / "async")["params_sha256"]
    log = _log(tmp_path / "async")
    assert log["seq"].tolist() == list(range(12)) and log["staleness"].tolist() == [0] * 12


def test_async_run_replays_exactly_on_other_world_sizes(tmp_path):
    run_dir = tmp_path / "async"
    done = run_train([*DIGITS, "--iterations", "30", "--schedule", "async", "--run-dir", str(run_dir)], ranks=2)
    assert done.returncode == 0, done.stderr
    log = _log(run_dir)
    assert set(log["source"].tolist()) == {0, 1} and log["applied"].all() and len(log["seq"]) == 30
    assert (np.diff(log["seq"]) == 1).all() and len(set(log["key"].tolist())) == 30
    for ranks in (1, 3):
        replayed = run_train(["--replay", str(run_dir)], ranks=ranks)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "matches the run's" in replayed.stdout
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    evals = [r for r in rows if r["seq"] == "-1"]
    assert [int(r["evaluated_version"]) for r in evals] == [5, 10, 15, 20, 25, 30]
    assert all(r["score"] for r in evals)


def test_async_max_staleness_zero_applies_only_fresh_updates(tmp_path):
    """On one rank every update is fresh (= synchronous ARS, above); on two, each version
    takes the first update to arrive and drops the others."""
    run_dir = tmp_path / "r"
    args = [*DIGITS, "--iterations", "20", "--schedule", "async", "--max-staleness", "0", "--run-dir", str(run_dir)]
    done = run_train(args, ranks=2)
    assert done.returncode == 0, done.stderr
    log = _log(run_dir)
    assert (log["staleness"][log["applied"]] == 0).all() and (log["staleness"][~log["applied"]] > 0).all()
    assert log["applied"].sum() == 20
    replayed = run_train(["--replay", str(run_dir)])
    assert replayed.returncode == 0 and "matches the run's" in replayed.stdout


def test_async_resume_continues_the_log(tmp_path):
    run_dir = tmp_path / "r"
    args = [*DIGITS, "--schedule", "async", "--checkpoint-every", "5"]
    assert run_train([*args, "--iterations", "10", "--run-dir", str(run_dir)], ranks=2).returncode == 0
    done = run_train(["--resume", str(run_dir), "--iterations", "16"], ranks=3)
    assert done.returncode == 0, done.stderr
    log = _log(run_dir)
    assert log["applied"].sum() == 16 and (np.diff(log["seq"]) == 1).all() and len(set(log["key"].tolist())) == 16
    assert "matches the run's" in run_train(["--replay", str(run_dir)]).stdout


def test_async_signal_on_one_rank_checkpoints_and_resumes(tmp_path):
    run_dir = tmp_path / "r"
    proc = _start_long_run(run_dir, ranks=2, extra=("--schedule", "async"))
    os.kill(_rank_pids(str(run_dir))[1], signal.SIGTERM)  # travels to rank 0 as a stop request
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "stopped by SIGTERM" in out
    stopped = inspect_json(run_dir)["iteration"]
    done = run_train(["--resume", str(run_dir), "--iterations", str(stopped + 3)])  # on 1 rank
    assert done.returncode == 0, done.stderr
    assert inspect_json(run_dir)["iteration"] == stopped + 3


def test_async_killed_rank_ends_the_job_quickly(tmp_path):
    run_dir = tmp_path / "r"
    proc = _start_long_run(run_dir, ranks=2, extra=("--schedule", "async"))
    killed_at = time.time()
    os.kill(_rank_pids(str(run_dir))[1], signal.SIGKILL)
    proc.communicate(timeout=60)
    assert time.time() - killed_at <= 30
    assert proc.returncode == signal.SIGKILL  # MPICH's mpiexec exits with the killed rank's signal number


@pytest.mark.parametrize(
    "args, line",
    [
        (
            ["--schedule", "async", "--population", "3"],
            "--schedule: async needs --population 1 (the population operators judge every member at the same "
            "iteration) (got 'async')",
        ),
        (["--max-staleness", "2"], "--max-staleness: only with --schedule async (got 2)"),
        (["--replay", "{tmp}/nothing"], "--replay: {tmp}/nothing holds no checkpoint"),
    ],
)
def test_bad_async_combinations(tmp_path, args, line):
    args = [a.format(tmp=tmp_path) for a in args]
    done = run_train([*args, "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"hpcars.train: error: {line.format(tmp=tmp_path)}"]
    assert not (tmp_path / "r").exists()
