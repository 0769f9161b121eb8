"""analysis/lineages.py: what truncation kept, read back from the members table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from hpcars.analysis.lineages import generation_rows, main, survivors_on, unshifted
from tests.conftest import train_in_process


def test_a_fast_faller_outranks_a_steady_member_only_with_the_shift():
    # member 0 ran 100 steps, the others the whole 1,000: shifted it is the best, unshifted the worst
    members = {
        "iteration": np.array([4]),
        "reward_mean": np.array([[10.0, 5.0, 4.0, 3.0]]),
        "samples_mean": np.array([[100.0, 1000.0, 1000.0, 1000.0]]),
        "born": np.array([[0, 0, 4, 4]]),
        "parent": np.array([[-1, -1, 0, 0]]),
    }
    [(row, cloned)] = generation_rows(members)
    assert row == 0 and cloned.tolist() == [2, 3]
    assert survivors_on(members["reward_mean"][0], 2) == {0, 1}
    assert survivors_on(unshifted(members, 1.0)[0], 2) == {1, 2}
    assert survivors_on(unshifted(members, 0.0)[0], 2) == {0, 1}


def test_lineages_of_a_run_without_shift_agree_with_its_truncations(tmp_path, capsys):
    run_dir = tmp_path / "sweep" / "seed=0"
    args = ["--population", "4", "--directions", "2", "--generation-every", "2", "--kill-fraction", "0.5"]
    status, err = train_in_process([*args, "--iterations", "6", "--eval-every", "2", "--run-dir", str(run_dir)], capsys)
    assert status == 0, err
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "lineages.csv")
    [row] = table.to_dict("records")
    # no shift: the ranking truncation used is the unshifted one, so it never disagrees
    assert (row["generations"], row["killed_top_unshifted"], row["disagree"]) == (3, 0, 0)
    assert (row["run"], row["outcome"]) == ("seed=0", "finished")  # the regression task has no target
    assert np.isfinite(row["best_eval"]) and (tmp_path / "out" / "lineages.png").stat().st_size > 0


def test_a_truncation_that_killed_the_best_walker_is_counted(tmp_path):
    """A run resumed into the members table at iteration 3 (its metrics start at 1); at iteration
    4 truncation, ranking on the shifted reward, replaced members 1 and 3 — member 1 had the best
    unshifted return, and ranking on that return would have kept members 1 and 2."""
    import h5py

    run_dir = tmp_path / "sweep" / "runs" / "seed=7"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"seed": 7, "shift": 1.0, "target": 3120.0}))
    (run_dir / "summary.json").write_text(json.dumps({"reached_target": None}))
    with h5py.File(run_dir / "history.h5", "w") as f:
        f["metrics/iteration"] = np.arange(1, 5, dtype=float)
        f["metrics/total_episodes"] = 64.0 * np.arange(1, 5)
        f["metrics/score"] = [np.nan, 900.0, np.nan, 950.0]
        f["members/iteration"] = np.array([3, 4])
        f["members/reward_mean"] = np.array([[1.0, 1.0, 1.0, 1.0], [10.0, 3.0, 5.0, 4.0]])
        f["members/samples_mean"] = np.array([[50.0] * 4, [100.0, 1000.0, 900.0, 900.0]])  # returns 110, 1003, 905, 904
        f["members/born"] = np.array([[0, 0, 0, 0], [0, 4, 0, 4]])
        f["members/parent"] = np.array([[-1, -1, -1, -1], [-1, 0, -1, 0]])
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    [row] = pd.read_csv(tmp_path / "out" / "lineages.csv").to_dict("records")
    assert (row["generations"], row["killed_top_unshifted"], row["disagree"]) == (1, 1, 1)
    assert (row["best_eval"], row["at_episodes"], row["last_gain_episodes"]) == (950, 256, 0)
    assert (row["run"], row["outcome"]) == ("sweep/seed=7", "missed")
    (run_dir / "summary.json").write_text(json.dumps({"reached_target": {"iteration": 4, "score": 3150.0}}))
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert pd.read_csv(tmp_path / "out" / "lineages.csv")["outcome"].tolist() == ["reached"]
    (run_dir / "summary.json").unlink()  # still running
    assert main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    [row] = pd.read_csv(tmp_path / "out" / "lineages.csv").to_dict("records")
    assert row["outcome"] == "unfinished"
