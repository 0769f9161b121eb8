"""The run's history (``hpcars.run.history``): checkpoints append only new rows to ``history.h5``,
rows past the resumed checkpoint are cut, older checkpoint layouts still read, and the
asynchronous log keeps one merged V2 moment per update."""

from __future__ import annotations

import csv
import dataclasses
import json

import h5py
import numpy as np

from hpcars.run import checkpoint
from hpcars.run import history as run_history
from tests.conftest import checkpoint_file, inspect_json, run_train

TINY = ["--directions", "4", "--batch-size", "256", "--checkpoint-every", "2", "--keep-checkpoints", "10"]
DIGITS_V2 = ["--task", "digits", "--variant", "v2", "--directions", "3", "--batch-size", "64", "--eval-every", "2"]


def _csv_iterations(run_dir) -> list[int]:
    with open(run_dir / "metrics.csv") as fh:
        return [int(row["iteration"]) for row in csv.DictReader(fh)]


def test_checkpoints_hold_row_counts_and_the_history_holds_the_rows(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--iterations", "8", "--run-dir", str(run_dir)]).returncode == 0
    files = checkpoint.listing(run_dir)
    assert [checkpoint.iteration_of(p) for p in files] == [2, 4, 6, 8]
    sizes = []
    for path in files:
        with h5py.File(path) as f:
            assert "metrics" not in f and "async_log" not in f  # no table is rewritten by a checkpoint
            counts = json.loads(f.attrs["history"])
            assert counts["metrics"] == checkpoint.iteration_of(path) and counts["async_log"] == 0
        sizes.append(path.stat().st_size)
    assert len(set(sizes[:-1])) == 1  # a checkpoint does not grow with the run (the last adds /best)
    early = checkpoint.read(files[0])  # an older checkpoint names a prefix of the same rows
    late = checkpoint.read(files[-1])
    assert list(early.metrics["iteration"]) == [1, 2]
    assert list(late.metrics["iteration"]) == list(range(1, 9)) == _csv_iterations(run_dir)
    np.testing.assert_array_equal(late.metrics["reward_mean"][:2], early.metrics["reward_mean"])


def test_rows_past_the_resumed_checkpoint_are_cut(tmp_path):
    """A crash between appending rows and writing the checkpoint that names them leaves extra
    rows: the resume cuts them, and the table ends as an uninterrupted run's."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert run_train([*TINY, "--iterations", "6", "--run-dir", str(straight)]).returncode == 0
    assert run_train([*TINY, "--iterations", "4", "--run-dir", str(crashed)]).returncode == 0
    rows = run_history.rows(crashed)
    garbage = {c: np.full(3, -7.0) for c in ("iteration", "reward_mean")}
    run_history.append(crashed, {"metrics": garbage}, rows)  # rows no checkpoint names
    assert run_history.rows(crashed)["metrics"] == rows["metrics"] + 3
    assert run_train([*TINY, "--iterations", "6", "--run-dir", str(crashed)]).returncode == 0
    a, b = checkpoint.read(checkpoint_file(straight)), checkpoint.read(checkpoint_file(crashed))
    assert list(b.metrics["iteration"]) == list(range(1, 7)) == _csv_iterations(crashed)
    np.testing.assert_array_equal(a.metrics["reward_mean"], b.metrics["reward_mean"])
    assert run_history.rows(crashed)["metrics"] == 6
    assert inspect_json(straight)["params_sha256"] == inspect_json(crashed)["params_sha256"]


def test_a_checkpoint_with_its_tables_inside_still_resumes(tmp_path):
    """Format 4 kept the metrics table in every checkpoint: rewritten that way, the run resumes
    with its table and moves it into history.h5 at its next checkpoint."""
    straight, old = tmp_path / "straight", tmp_path / "old"
    assert run_train([*TINY, "--iterations", "6", "--run-dir", str(straight)]).returncode == 0
    assert run_train([*TINY, "--iterations", "4", "--run-dir", str(old)]).returncode == 0
    latest = checkpoint_file(old)
    inline = dataclasses.replace(checkpoint.read(latest), history=None)
    for path in checkpoint.listing(old):
        path.unlink()
    run_history.path_in(old).unlink()
    checkpoint.write(old, inline, keep=3)
    with h5py.File(checkpoint_file(old)) as f:
        assert "metrics" in f and "history" not in f.attrs
    assert run_train([*TINY, "--iterations", "6", "--run-dir", str(old)]).returncode == 0
    resumed = checkpoint.read(checkpoint_file(old))
    assert resumed.history == {"metrics": 6, "async_log": 0, "members": 0}
    assert list(resumed.metrics["iteration"]) == list(range(1, 7))
    assert inspect_json(straight)["params_sha256"] == inspect_json(old)["params_sha256"]


def test_a_copied_out_checkpoint_reads_for_its_parameters(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train([*TINY, "--iterations", "2", "--run-dir", str(run_dir)]).returncode == 0
    loose = tmp_path / "loose.h5"
    loose.write_bytes(checkpoint_file(run_dir).read_bytes())
    try:
        checkpoint.read(loose)
        raise AssertionError("the tables of a copied-out checkpoint cannot be found")
    except checkpoint.HistoryUnavailable as err:
        assert "history.h5" in str(err) and "\n" not in str(err)
    assert checkpoint.read(loose, tables=False).params_sha256 == inspect_json(run_dir)["params_sha256"]
    assert inspect_json(loose)["params_sha256"] == inspect_json(run_dir)["params_sha256"]


def test_the_async_log_keeps_one_merged_moment_per_update(tmp_path):
    run_dir = tmp_path / "async"
    args = [*DIGITS_V2, "--iterations", "6", "--schedule", "async", "--run-dir", str(run_dir)]
    assert run_train(args, ranks=2).returncode == 0
    saved = checkpoint.read(checkpoint_file(run_dir))
    log = saved.async_log
    d = saved.obs_stat.mean.shape[0]
    assert log["obs"].shape == (len(log["seq"]), 1 + 2 * d)  # not one moment per branch
    applied = log["obs"][log["applied"]]
    assert applied[:, 0].sum() == saved.obs_stat.count  # every input the statistics saw is in the log
    assert "matches the run's" in run_train(["--replay", str(run_dir)]).stdout


def test_append_over_stale_rows_gives_a_column_not_given_its_fill_value(tmp_path):
    """Rows at or past ``start`` left by an attempt that crashed before its checkpoint are
    replaced, in every column: one given again gets the new values, one not given its fill."""
    first = {"metrics": {"loss": np.arange(4.0), "count": np.arange(4), "note": np.array(["a", "b", "c", "d"])}}
    assert run_history.append(tmp_path, first, {"metrics": 0}) == {"metrics": 4}
    again = {"metrics": {"loss": np.array([10.0, 11.0, 12.0])}}  # from row 2 on, 'count' and 'note' not given
    assert run_history.append(tmp_path, again, {"metrics": 2}) == {"metrics": 5}
    table = run_history.read(tmp_path, {"metrics": 5})["metrics"]
    np.testing.assert_array_equal(table["loss"], [0.0, 1.0, 10.0, 11.0, 12.0])
    np.testing.assert_array_equal(table["count"], [0, 1, 0, 0, 0])
    assert table["note"].tolist() == ["a", "b", "", "", ""]
