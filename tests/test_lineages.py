"""analysis/lineages.py: what truncation kept, read back from the members table."""

from __future__ import annotations

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
    assert np.isfinite(row["best_eval"]) and (tmp_path / "out" / "lineages.png").stat().st_size > 0
