"""The seed-success study: seed ranges in sweep specs, and the report's every-seed view."""

from __future__ import annotations

import json
import statistics

import pytest

from hpcars.analysis.load import load_sweep
from hpcars.analysis.report import write_report
from hpcars.analysis.seeds import episodes_to, seed_success
from hpcars.jobs.spec import SpecError, load
from tests.conftest import run_train


def test_spec_seed_range(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('seeds = { start = 5, count = 3 }\n[base]\ntask = "regression"\n')
    assert load(spec).seeds == (5, 6, 7)
    spec.write_text('seeds = { start = 5 }\n[base]\ntask = "regression"\n')
    with pytest.raises(SpecError, match="seeds = { start = S, count = C }"):
        load(spec)


def test_seed_success_agrees_with_each_runs_own_record(tmp_path):
    """The fraction reached and the median episodes, computed by the report from the
    runs' metrics, equal what each run recorded itself when it reached the target."""
    target = 500.0
    for seed in range(5):
        args = ["--task", "CartPole-v1", "--directions", "4", "--iterations", "12", "--step-size", "0.005"]
        args += ["--eval-every", "3", "--eval-episodes", "4", "--target", str(target), "--seed", str(seed)]
        done = run_train([*args, "--run-dir", str(tmp_path / f"runs/seed={seed}")])
        assert done.returncode == 0, done.stderr
    recorded = []
    for seed in range(5):
        hit = json.loads((tmp_path / f"runs/seed={seed}/summary.json").read_text())["reached_target"]
        recorded.append(hit["episodes"] if hit else float("inf"))
    assert 0 < sum(e != float("inf") for e in recorded) < 5, recorded  # the test needs both outcomes
    table = load_sweep(tmp_path / "runs")
    assert episodes_to(table, target) == {"all": sorted(recorded)}
    row = seed_success(table, target).iloc[0]
    assert row["seeds"] == 5
    assert row["reached_fraction"] == sum(e != float("inf") for e in recorded) / 5
    median = statistics.median_low(recorded)
    assert (row["p50_episodes"] if row["p50_episodes"] is not None else float("inf")) == median
    out = write_report(tmp_path / "runs", threshold=target)
    assert (out / "seeds.png").stat().st_size > 10_000
    assert "Every seed: 500" in (out / "README.md").read_text()


def test_an_option_that_cannot_act_is_not_a_setting():
    """Runs of one sweep made before and after a default changed (repulsion_radius 1 -> 0.1)
    differ only in an option that acts with --repulsion > 0: one setting, not two."""
    from hpcars.analysis.load import _effective

    before, after = {"repulsion": 0.0, "repulsion_radius": 1.0}, {"repulsion": 0.0, "repulsion_radius": 0.1}
    assert _effective(before, "repulsion_radius") == _effective(after, "repulsion_radius") is None
    assert _effective({"repulsion": 0.5, "repulsion_radius": 0.1}, "repulsion_radius") == 0.1
    assert _effective({"anneal_t0": 0.0}, "anneal_pairs") is None  # missing in older configs too
    assert _effective({"seed": 3}, "seed") == 3
