"""analysis/population_study.py: the cost of a solved run, and the table from real run directories."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hpcars.analysis.population_study import (
    Outcome,
    arm_row,
    cut,
    expected_draws,
    expected_to_solve,
    main,
    read_sweep,
)
from tests.conftest import run_train


def test_expected_episodes_count_failed_runs_whole_budget():
    # p = 1/2: one success at 100, one failure spending 600 -> 100 + 1 · 600
    assert expected_to_solve([Outcome(0, 100.0, 100, 1.0, 0.0), Outcome(1, math.inf, 600, 2.0, 0.0)]) == 700.0
    # p = 3/4: mean success 200, failures cost 900 -> 200 + (1/3) · 900
    runs = [Outcome(s, e, int(e), 1.0, 0.0) for s, e in enumerate((100.0, 200.0, 300.0))]
    runs.append(Outcome(3, math.inf, 900, 1.0, 0.0))
    assert expected_to_solve(runs) == pytest.approx(500.0)
    assert expected_to_solve([Outcome(0, math.inf, 600, 1.0, 0.0)]) == math.inf
    assert expected_to_solve([Outcome(0, 50.0, 50, 1.0, 0.0)]) == 50.0


def test_bootstrap_interval_of_expected_episodes():
    runs = [Outcome(s, e, int(e), 1.0, 0.0) for s, e in enumerate((100.0, 200.0, 300.0, 400.0))]
    runs.append(Outcome(4, math.inf, 900, 1.0, 0.0))
    draws = expected_draws(runs)
    # each draw is the resample's total spend over its solved seeds; one draw of every seed once is E itself
    assert draws.shape == (2000,) and (draws >= 100.0).all()
    assert expected_to_solve(runs) == pytest.approx((100 + 200 + 300 + 400 + 900) / 4)
    assert (draws == expected_draws(runs)).all()  # a fixed generator: the same table every time
    row = arm_row("t", "pop", runs, plain=runs)
    assert row["expected_low"] < row["expected_episodes_to_solve"] < row["expected_high"]
    # the same seeds resampled in pairs: an arm identical to plain has ratio 1, interval (1, 1)
    assert (row["expected_vs_plain"], row["expected_vs_plain_low"], row["expected_vs_plain_high"]) == (1, 1, 1)
    # a resample without a solved seed costs inf, and equal costs leave no spread
    assert (expected_draws([Outcome(0, math.inf, 600, 1.0, 0.0)]) == math.inf).all()
    flat = arm_row("t", "plain", [Outcome(s, 50.0, 50, 1.0, 0.0) for s in range(5)])
    assert flat["expected_low"] == flat["expected_high"] == 50.0 and math.isnan(flat["expected_vs_plain"])


def test_study_table_from_real_sweeps(tmp_path):
    """Two tiny CartPole sweeps (plain, population of 2) on seeds 0 and 1: the table counts every
    member's episodes to the first evaluation at the target; a seed missing from one arm is left out."""
    base = ["--task", "CartPole-v1", "--directions", "2", "--iterations", "4", "--eval-every", "1"]
    base += ["--eval-episodes", "2", "--target", "30", "--stop-at-target", "true"]
    for arm, extra, seeds in (("plain", [], (0, 1, 2)), ("pop", ["--population", "2"], (0, 1))):
        for seed in seeds:
            run_dir = tmp_path / arm / f"seed={seed}"
            done = run_train(base + extra + ["--seed", str(seed), "--run-dir", str(run_dir)])
            assert done.returncode == 0, done.stderr
    (plain, plain_budget), (pop, pop_budget) = read_sweep(tmp_path / "plain"), read_sweep(tmp_path / "pop")
    assert plain_budget == 4 * 2 * 2 and pop_budget == 4 * 2 * 2 * 2  # iterations · M · 2N
    assert sorted(plain) == [0, 1, 2] and sorted(pop) == [0, 1]
    for seed, outcome in pop.items():
        summary = json.loads((tmp_path / "pop" / f"seed={seed}" / "summary.json").read_text())
        assert outcome.spent == summary["episodes"] == sum(summary["episode_count"]["episodes_by_member"])
        if summary["reached_target"]:
            assert outcome.episodes == summary["reached_target"]["episodes"]
            assert outcome.episodes % (2 * 2 * 2) == 0  # whole iterations of both members' 2N branches
    out = tmp_path / "report"
    assert main(["--study", "cartpole", str(tmp_path / "plain"), str(tmp_path / "pop"), "--out", str(out)]) == 0
    table = (out / "population-study.md").read_text().splitlines()
    assert len(table) == 4 and "| cartpole | plain |" in table[2] and "/2 (" in table[2]
    assert table[2].endswith("| — |") and not table[3].endswith("| — |")  # population: its E against plain's
    # episodes per member on solved seeds: the population's own count halved, plain's as it is
    report = pd.read_csv(out / "population-study.csv").set_index("arm")
    solved = [o.episodes for o in pop.values() if math.isfinite(o.episodes)]
    assert report.loc["population", "median_member_episodes_solved"] == pytest.approx(np.median(solved) / 2)
    solved = [plain[s].episodes for s in pop if math.isfinite(plain[s].episodes)]
    assert report.loc["plain", "median_member_episodes_solved"] == pytest.approx(np.median(solved))
    assert (out / "population-study.png").stat().st_size > 1000
    # a named control arm (here the plain sweep again) joins the task's rows on the same seeds
    more = ["--arm", "cartpole", "control", str(tmp_path / "plain"), "--out", str(out)]
    assert main(["--study", "cartpole", str(tmp_path / "plain"), str(tmp_path / "pop")] + more) == 0
    table = (out / "population-study.md").read_text().splitlines()
    control = table[4].replace("control", "plain").rsplit("|", 2)[0]  # all but the ratio column
    assert len(table) == 5 and control == table[2].rsplit("|", 2)[0]
    assert table[4].endswith("| 1.00 (1.00–1.00) |")  # the control is plain itself, seed for seed
    # sweeps joined by commas pool their seeds (here two run directories of the plain sweep);
    # a seed in two of them is a one-line error, exit status 2
    pooled = ",".join(str(tmp_path / "plain" / f"seed={seed}") for seed in (0, 1))
    assert main(["--study", "cartpole", pooled, str(tmp_path / "pop"), "--out", str(out)]) == 0
    assert (out / "population-study.md").read_text().splitlines()[2] == table[2]
    with pytest.raises(SystemExit) as stop:
        main(["--study", "cartpole", f"{pooled},{tmp_path / 'plain'}", str(tmp_path / "pop"), "--out", str(out)])
    assert stop.value.code == 2


def test_a_run_cut_at_a_budget_is_the_run_given_that_budget(tmp_path):
    """--budget B reads a run's first B episodes as the run with --max-episodes B: checked against
    such runs themselves, on seeds that reach the target within B and after it."""
    base = ["--task", "CartPole-v1", "--directions", "2", "--eval-every", "2", "--eval-episodes", "2"]
    base += ["--target", "400", "--stop-at-target", "true"]
    per_eval = 2 * 2 * 2  # 2 iterations of 2N = 4 episodes
    b = 2 * per_eval
    for name, extra in (("long", ["--iterations", "12"]), ("short", ["--max-episodes", str(b)])):
        for seed in range(4):
            run_dir = tmp_path / name / f"seed={seed}"
            done = run_train(base + extra + ["--seed", str(seed), "--run-dir", str(run_dir)])
            assert done.returncode == 0, done.stderr
    (long, _), (short, _) = read_sweep(tmp_path / "long"), read_sweep(tmp_path / "short")
    assert any(run.episodes <= b for run in long.values()) and any(run.episodes > b for run in long.values())
    for seed, run in long.items():
        assert (cut(run, b).episodes, cut(run, b).spent) == (short[seed].episodes, short[seed].spent)
    with pytest.raises(ValueError, match="multiple of 8 training episodes"):
        cut(long[0], b + 4)
    with pytest.raises(ValueError, match="at most the run's own 48"):
        cut(long[0], 7 * per_eval)
    out = tmp_path / "report"
    study = ["--study", "cartpole", str(tmp_path / "long"), str(tmp_path / "long"), "--out", str(out)]
    assert main(study + ["--budget", str(b)]) == 0
    table = pd.read_csv(out / "population-study.csv").set_index("arm")
    assert table.loc["plain", "reached"] == sum(math.isfinite(run.episodes) for run in short.values())
