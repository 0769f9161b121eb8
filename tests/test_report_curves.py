"""The report's learning curves count runs that stopped early at the target (no survivor bias)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hpcars.analysis import seeds
from hpcars.analysis.report import write_report
from hpcars.run.output import SUMMARY_FILE
from tests.conftest import run_train

COMMON = ["--iterations", "5", "--eval-every", "1", "--target", "-1000"]  # every evaluation reaches -1000


def _scores(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "metrics.csv").read_text().splitlines())
    return {int(r["iteration"]): float(r["score"]) for r in rows if r["score"]}


def _bands(runs: Path) -> pd.DataFrame:
    return pd.read_csv(write_report(runs) / "curves.csv").set_index("iteration")


def test_a_run_stopped_at_the_target_keeps_its_last_score_in_the_curves(tmp_path):
    runs = tmp_path / "runs"
    early, late = runs / "seed=0", runs / "seed=1"
    for run_dir, seed, stop in ((early, 0, ["--stop-at-target", "true"]), (late, 1, [])):
        done = run_train([*COMMON, *stop, "--seed", str(seed), "--run-dir", str(run_dir)])
        assert done.returncode == 0, done.stderr
    stopped, going = _scores(early), _scores(late)
    assert list(stopped) == [1] and list(going) == [1, 2, 3, 4, 5]  # the early run ended at its first evaluation
    assert seeds.SUMMARY_FILE == SUMMARY_FILE and (early / SUMMARY_FILE).exists()

    bands = _bands(runs)
    assert list(bands.index) == [1, 2, 3, 4, 5] and set(bands["setting"]) == {"all"}
    for iteration, score in going.items():
        both = [stopped[1], score]  # after iteration 1 the stopped run counts with its last score
        row = bands.loc[iteration]
        assert row["runs"] == 2
        np.testing.assert_allclose(
            [row["score_q25"], row["score_median"], row["score_q75"]], np.percentile(both, [25, 50, 75]), rtol=1e-6
        )

    (early / SUMMARY_FILE).unlink()  # the same run as if still going: it counts only where it was evaluated
    bands = _bands(runs)
    assert bands.loc[1, "runs"] == 2
    for iteration in (2, 3, 4, 5):
        assert bands.loc[iteration, "runs"] == 1
        assert bands.loc[iteration, "score_median"] == pytest.approx(going[iteration], rel=1e-9)
