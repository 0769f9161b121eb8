"""``hpcars.fit``: objects in memory, the command line's run on 1 and 2 ranks, bit for bit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hpcars
from hpcars.algorithm.branches import ParamSpec
from hpcars.runtime.comm import SingleProcess
from tests import plugins_for_tests as plugins
from tests.conftest import run_cli, run_train
from tests.fit_driver import COMMON, TASKS, cli_args


def sha(run_dir: Path) -> str:
    return json.loads((run_dir / "summary.json").read_text())["params_sha256"]


def fit(task, run_dir: Path, **options) -> hpcars.Result:
    return hpcars.fit(task, run_dir=str(run_dir), transport=SingleProcess(), **{**COMMON, **options})


def test_fit_equals_the_command_line_bitwise_on_1_and_2_ranks(tmp_path, capsys):
    one = {
        "problem": fit(plugins.fixed_wine(), tmp_path / "fit-problem"),
        "objective": fit(plugins.sphere(), tmp_path / "fit-objective"),
    }
    for kind, task in TASKS.items():
        assert run_train(cli_args(task, tmp_path / f"cli-{kind}")).returncode == 0
        assert one[kind].params_sha256 == sha(tmp_path / f"cli-{kind}") == one[kind].summary["params_sha256"]
    two = tmp_path / "two"
    done = run_cli([str(two)], ranks=2, module="tests.fit_driver", timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    for kind in TASKS:
        assert sha(two / f"fit-{kind}") == sha(two / f"cli-{kind}") == one[kind].params_sha256
        assert json.loads((two / f"fit-{kind}" / "summary.json").read_text())["world_sizes"] == [[0, 2]]
    # --verbose: each rank's set-up, rank 1's line prefixed
    assert "[rank 1/2] devices cpu (node-local rank 1); task sphere" in done.stdout
    assert "\ndevices cpu (node-local rank 0); task sphere" in done.stdout


def test_quiet_prints_nothing_but_warnings(tmp_path, capsys):
    assert run_train(["--run-dir", str(tmp_path / "run"), "--iterations", "3", "--quiet"]).stdout == ""
    loud = run_train(["--run-dir", str(tmp_path / "loud"), "--iterations", "3"]).stdout
    assert "done: 3 iterations" in loud and "params_sha256" in loud
    both = run_train(["--run-dir", str(tmp_path / "both"), "--quiet", "--verbose", "true"])
    assert both.returncode == 2 and both.stderr.strip() == "hpcars.train: error: --verbose: not with --quiet (got True)"


def test_result_holds_vectors_and_loaded_models(tmp_path, capsys):
    result = fit(plugins.fixed_wine(), tmp_path / "run")
    assert result.iterations == 4 and result.interrupted_by == 0 and result.run_dir == tmp_path / "run"
    spec = ParamSpec.of(result.model)
    assert torch.equal(spec.flatten(result.model), torch.from_numpy(result.params))
    assert torch.equal(spec.flatten(result.best_model), torch.from_numpy(result.best_params))
    assert result.model(torch.zeros(2, 6)).shape == (2, 3)
    assert result.summary["final"]["score"] == pytest.approx(result.summary["final"]["score"])
    objective = fit(plugins.sphere(), tmp_path / "objective")
    assert objective.model is None and objective.params.shape == (10,)


def test_a_callback_sees_every_iteration_and_false_stops_with_a_checkpoint(tmp_path, capsys):
    seen = []

    def callback(record):
        seen.append(record.iteration)
        return record.iteration < 3

    result = fit(plugins.sphere(), tmp_path / "run", iterations=50, callback=callback)
    assert seen == [1, 2, 3] and result.iterations == 3
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000003.h5").exists() or any(
        p.name.endswith("3.h5") for p in (tmp_path / "run" / "checkpoints").iterdir()
    )
    assert result.summary["iterations"] == 3 and "score" in result.summary["final"]


def test_a_module_with_a_reward_function(tmp_path, capsys):
    target = torch.tensor([[0.5, -1.0, 2.0]])
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)

    def reward(m, context):
        return -float(((m.weight - target) ** 2).sum())

    result = hpcars.fit(
        model,
        reward=reward,
        run_dir=str(tmp_path / "run"),
        iterations=30,
        directions=8,
        step_size=0.1,
        noise_std=0.05,
        transport=SingleProcess(),
    )
    assert isinstance(result.model, nn.Linear) and torch.equal(
        model.weight, torch.zeros(1, 3)
    )  # the original is untouched
    assert float(((result.model.weight.detach() - target) ** 2).sum()) < 0.5 * float((target**2).sum())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == "memory:Linear"


@pytest.mark.parametrize(
    "call, line",
    [
        (lambda d: hpcars.fit("regression", run_dir=d, step_sise=0.1), "step_sise: unknown option; allowed: "),
        (lambda d: hpcars.fit("regression", run_dir=d, directions=0), "--directions: must be an integer >= 1 (got 0)"),
        (lambda d: hpcars.fit(nn.Linear(2, 1), run_dir=d), "reward: give reward=fn(model, context) -> float"),
        (
            lambda d: hpcars.fit("regression", run_dir=d, preset="nope"),
            "--preset: must be one of ",
        ),
    ],
)
def test_bad_options_are_the_command_lines_one_line(tmp_path, call, line):
    with pytest.raises(hpcars.InputError) as err:
        call(str(tmp_path / "run"))
    assert str(err.value).startswith(line) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_config_and_a_preset(tmp_path, capsys):
    config = hpcars.TrainConfig(iterations=3, directions=4, seed=2)
    result = hpcars.fit(config=config, run_dir=str(tmp_path / "run"), step_size=0.01, transport=SingleProcess())
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["iterations"], saved["directions"], saved["seed"], saved["step_size"]) == (3, 4, 2, 0.01)
    assert saved["task"] == "regression" and result.iterations == 3 and math.isfinite(result.summary["final"]["score"])
    np.testing.assert_array_equal(
        result.params,
        result.model.weight.detach().numpy().ravel().tolist() + result.model.bias.detach().numpy().tolist(),
    )


@pytest.mark.parametrize(
    "options, argv",
    [
        (dict(noise_std=-1.0), ["--noise-std", "-1"]),
        (dict(fitness="rank"), ["--fitness", "rank"]),
        (dict(perturbation="sparse"), ["--perturbation", "sparse"]),
        (dict(directions=4, top_directions=9), ["--directions", "4", "--top-directions", "9"]),
        (dict(preset="hopper", directions=0), ["--preset", "hopper", "--directions", "0"]),
    ],
)
def test_fit_and_the_command_line_share_one_resolver(options, argv):
    """The same bad value is the same one line from ``hpcars.fit`` and from ``parse_args``."""
    from hpcars.cli.options import parse_args

    with pytest.raises(hpcars.ConfigError) as cli:
        parse_args(["--task", "regression", *argv])
    with pytest.raises(hpcars.InputError) as api:
        hpcars.fit("regression", transport=SingleProcess(), **options)
    assert str(api.value) == str(cli.value) and "\n" not in str(cli.value)


def test_fit_refuses_a_value_of_the_wrong_type_naming_the_option():
    for options, line in [
        (dict(directions="8"), "--directions: expected int, got '8'"),
        (dict(step_size=True), "--step-size: expected float, got True"),
        (dict(env_backend=3), "--env-backend: expected str, got 3"),
    ]:
        with pytest.raises(hpcars.InputError) as err:
            hpcars.fit("regression", transport=SingleProcess(), **options)
        assert str(err.value) == line
