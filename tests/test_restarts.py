"""``--restart``: the stall test against its definition, and restarts forced on a tiny task —
where they put θ, the same on 1 and 3 ranks, and resumed bit for bit."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from hpcars.checkpoint import read
from hpcars.cli.options import parse_args
from hpcars.population.restart import RestartParams, Watch, observe, started_over
from tests.conftest import inspect_json, run_train

# --restart-min-gain far above any rise: every 4 iterations without one is a stall
FORCED = [
    "--task",
    "regression",
    "--directions",
    "5",
    "--eval-every",
    "2",
    "--restart-patience",
    "4",
    "--restart-min-gain",
    "1e9",
    "--restarts",
    "2",
    "--checkpoint-every",
    "2",
    "--keep-checkpoints",
    "10",
]


def test_a_stall_is_patience_iterations_without_a_rise_of_more_than_min_gain():
    params = RestartParams("fresh", patience=10, min_gain=0.5, limit=2)
    watch, stalled = observe(params, Watch(), 0, 1.0)
    assert (watch.bar, watch.since, watch.top, stalled) == (1.0, 0, 1.0, False)
    watch, stalled = observe(params, watch, 5, 1.4)  # higher, but by no more than min_gain: no progress
    assert (watch.bar, watch.since, watch.top, watch.top_iteration, stalled) == (1.0, 0, 1.4, 5, False)
    watch, stalled = observe(params, watch, 9, math.nan)  # a NaN evaluation is no progress either
    assert (watch.since, stalled) == (0, False)
    watch, stalled = observe(params, watch, 10, 1.2)
    assert stalled and watch.top == 1.4
    watch = started_over(watch, 10)
    assert watch == Watch(since=10, restarts=1)
    watch, stalled = observe(params, watch, 12, 0.3)  # the first score after a restart is the bar;
    assert (watch.bar, watch.since, stalled) == (0.3, 10, False)  # patience counts from the restart
    watch, stalled = observe(params, watch, 18, 0.9)  # a rise of 0.6 > 0.5 is progress
    assert (watch.bar, watch.since) == (0.9, 18)
    watch, stalled = observe(params, started_over(watch, 30), 40, 0.0)
    assert not stalled  # the limit (2 restarts) is spent


def test_restarts_off_and_the_checkpoint_arrays():
    watch, stalled = observe(RestartParams("none", patience=1), Watch(), 5, 1.0)
    assert not stalled and watch.top == 1.0
    watch = Watch(bar=2.5, since=7, top=3.0, top_iteration=9, restarts=1)
    assert Watch.from_arrays({k: np.asarray(v) for k, v in watch.arrays().items()}) == watch


@pytest.mark.parametrize("mode", ["fresh", "best"])
def test_a_forced_stall_restarts_at_the_same_iterations_on_1_and_3_ranks(tmp_path, mode):
    shas, restarted = {}, {}
    for ranks in (1, 3):
        run_dir = tmp_path / f"{mode}-n{ranks}"
        args = [*FORCED, "--restart", mode, "--iterations", "10", "--run-dir", str(run_dir)]
        done = run_train(args, ranks=ranks)
        assert done.returncode == 0, done.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        restarted[ranks] = summary["restarts"]["iterations"]
        shas[ranks] = inspect_json(run_dir)["params_sha256"]
        assert "restart 1 of 2 at iteration 4" in done.stdout
    assert restarted == {1: [4, 8], 3: [4, 8]} and shas[1] == shas[3]
    # the checkpoint of iteration 4 is written after the restart: θ is where the restart put it
    at_4 = read(tmp_path / f"{mode}-n1" / "checkpoints" / "ckpt-00000004.h5")
    first = read(tmp_path / f"{mode}-n1" / "checkpoints" / "ckpt-00000002.h5")
    params = at_4.members[0].params
    if mode == "best":  # the highest evaluation so far (the only start so far: the run's best)
        assert at_4.best is not None
        expected = at_4.best.params
    else:  # θ₀, where iteration 0 started
        expected = _initial_params(tmp_path / "fresh-initial")
    for name, value in params.items():
        np.testing.assert_array_equal(value, expected[name])
    assert any(not np.array_equal(first.members[0].params[n], params[n]) for n in params)
    assert int(np.asarray(at_4.population["born"])[0]) == 4 and int(np.asarray(at_4.restart["restarts"])) == 1


def _initial_params(run_dir) -> dict[str, np.ndarray]:
    """θ₀ of the forced runs: a run of the same options stopped before its first step."""
    import torch

    from hpcars.cli.options import parse_args
    from hpcars.run.engine import ARSTrainer
    from hpcars.runtime.comm import SingleProcess
    from hpcars.tasks import make_task

    cfg = parse_args([*FORCED, "--restart", "fresh", "--device", "cpu", "--run-dir", str(run_dir)])
    trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")])
    return trainer.named_params(0)


def test_a_run_stopped_between_restarts_resumes_bit_for_bit(tmp_path):
    """Stopped at 6 (after the first restart, with a top evaluation since it), resumed to 12."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    options = [*FORCED, "--restart", "best"]
    assert run_train([*options, "--iterations", "12", "--run-dir", str(whole)]).returncode == 0
    first = run_train([*options, "--iterations", "6", "--run-dir", str(parts)])
    assert first.returncode == 0, first.stderr
    again = run_train([*options, "--iterations", "12", "--run-dir", str(parts), "--resume", str(parts)])
    assert again.returncode == 0, again.stderr
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, parts))
    assert a["restarts"] == b["restarts"] and a["restarts"]["iterations"] == [4, 8]
    assert a["params_sha256"] == b["params_sha256"]


@pytest.mark.parametrize(
    "extra, line",
    [
        (["--restart", "sometimes"], "--restart: must be one of none, fresh, best"),
        (["--restart", "fresh", "--restart-patience", "0"], "--restart-patience: must be an integer >= 1"),
        (["--restart", "fresh", "--restart-min-gain", "nan"], "--restart-min-gain: must be a finite number >= 0"),
        (["--restart", "fresh", "--eval-every", "0"], "--restart: needs evaluations to judge a stall on"),
        (["--restart", "fresh", "--schedule", "async"], "--restart: needs --schedule static or dynamic"),
    ],
)
def test_bad_restart_options_are_one_line(tmp_path, capsys, extra, line):
    from tests.conftest import train_in_process

    status, err = train_in_process(["--iterations", "2", "--run-dir", str(tmp_path / "r"), *extra], capsys)
    assert status == 2 and len(err) == 1 and line in err[0], err
    assert not (tmp_path / "r").exists()


def test_where_a_restart_fires_is_read_from_the_run_without_it(tmp_path):
    """analysis.restarts: a run with --restart is the run without it until the first restart, so
    its iteration is predicted from the run without it, and a setting that never fires leaves the
    run as it was (the same bits); composing the arm checks both."""
    from hpcars.analysis.restarts import compose, first_restart, read_evaluations, read_runs

    def run(name, *extra):
        run_dir = tmp_path / name / "seed=0"
        done = run_train([*FORCED, "--iterations", "10", "--run-dir", str(run_dir), *extra])
        assert done.returncode == 0, done.stderr
        return run_dir

    base, rerun = run("base"), run("rerun", "--restart", "fresh", "--restarts", "1")
    never = run("never", "--restart", "fresh", "--restart-patience", "1000")
    assert inspect_json(never)["params_sha256"] == inspect_json(base)["params_sha256"]
    assert inspect_json(rerun)["params_sha256"] != inspect_json(base)["params_sha256"]
    runs = read_evaluations(tmp_path / "base")
    assert first_restart(RestartParams("fresh", 4, 1e9, 1), runs[0].points) == 4
    assert first_restart(RestartParams("fresh", 100, 0.0, 1), runs[0].points) is None
    assert compose(runs, read_runs(tmp_path / "rerun"), 4, 1e9, tmp_path / "arm") == "seed 0: restarts at 4"
    assert json.loads((tmp_path / "arm/runs/seed=0/summary.json").read_text())["restarts"]["iterations"] == [4]
    assert compose(runs, read_runs(tmp_path / "never"), 1000, 1e9, tmp_path / "arm2") == "seed 0: never restarts, rerun"
    with pytest.raises(ValueError, match="0 settings with --restart, need exactly 1"):
        compose(runs, read_runs(tmp_path / "never"), 4, 1e9, tmp_path / "wrong")


def test_the_spec_of_a_setting_runs_the_base_sweeps_options_on_the_seeds_it_fires_on(tmp_path):
    from hpcars.analysis.restarts import write_spec
    from hpcars.jobs.spec import load

    argv = {
        f"seed={s}": ["--preset", "swimmer-pop", "--restart", "none", "--max-episodes", "600", "--seed", str(s)]
        for s in (3, 4)
    }
    (tmp_path / "base").mkdir()
    (tmp_path / "base.toml").write_text(
        'name = "base"\n[base]\npreset = "swimmer-pop"\n[resources]\ntasks_per_node = 1\n'
    )
    (tmp_path / "base" / "sweep.json").write_text(json.dumps({"argv": argv, "spec": str(tmp_path / "base.toml")}))
    path = write_spec(tmp_path / "base", RestartParams("fresh", 8, 25.0, 3), [4], tmp_path)
    assert load(path).resources.tasks_per_node == 1  # the base spec's resources
    (run,) = load(path).runs()
    assert run.seed == 4 and run.options_argv() == [
        *("--preset", "swimmer-pop", "--restart", "fresh", "--max-episodes", "600", "--restart-patience", "8"),
        *("--restart-min-gain", "25.0", "--restarts", "3", "--seed", "4"),
    ]


@pytest.mark.parametrize(
    "preset,base,setting",
    [
        ("hopper-restart", "hopper", ("fresh", "60", "100", "3")),
        ("swimmer-pop", "swimmer-pop", ("fresh", "6", "10", "3")),
    ],
)
def test_a_restart_preset_is_its_base_with_the_setting_the_study_composed(preset, base, setting):
    """BENCHMARKS' restart arms are composed from `--preset BASE` runs plus the setting's
    options; the preset must be exactly that configuration, or the figures are not its own."""
    mode, patience, gain, limit = setting
    composed = parse_args(
        ["--preset", base, "--restart", mode, "--restart-patience", patience]
        + ["--restart-min-gain", gain, "--restarts", limit]
    )
    named = parse_args(["--preset", preset])
    assert dataclasses.replace(named, preset=base) == composed
    assert dataclasses.replace(parse_args(["--preset", preset, "--restart", "none"]), preset=base) != composed
