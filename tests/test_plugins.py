"""Plug-in tasks, --init-from, --reward metric and prioritized mini-batches."""

from __future__ import annotations

import csv
import json
import math

import h5py
import numpy as np
import pytest
import torch

from hpcars.config import TrainConfig
from hpcars.run.checkpoint import params_sha256
from hpcars.run.engine import ARSTrainer
from hpcars.run.initial import InitialWeights
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks import make_task
from hpcars.tasks.sampling import PrioritizedBatches, PriorityParams
from hpcars.tasks.supervised import digits_problem
from tests.conftest import checkpoint_file, inspect_json, run_cli, run_train, train_in_process

PLUGINS = "tests.plugins_for_tests"


def _rows(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))


# -- plug-in tasks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory, extra",
    [
        ("wine_like", ["--variant", "v2", "--directions", "7", "--top-directions", "3", "--branch-batch", "4"]),
        ("sphere", ["--directions", "5", "--step-size", "0.05", "--noise-std", "0.05", "--branch-batch", "4"]),
    ],
)
def test_plugins_train_and_are_world_size_invariant(tmp_path, factory, extra):
    hashes, scores = {}, {}
    for ranks in (1, 3):
        run_dir = tmp_path / f"n{ranks}"
        args = ["--task", f"{PLUGINS}:{factory}", "--iterations", "30", "--eval-every", "10", *extra]
        done = run_train([*args, "--run-dir", str(run_dir)], ranks=ranks)
        assert done.returncode == 0, done.stderr
        hashes[ranks] = inspect_json(run_dir)["params_sha256"]
        summary = json.loads((run_dir / "summary.json").read_text())
        scores[ranks] = (summary["initial"]["score"], summary["final"]["score"])
    assert hashes[1] == hashes[3]
    initial, final = scores[1]
    assert final > initial, scores


def test_plugin_factory_with_config_and_a_callable_loss(tmp_path):
    run_dir = tmp_path / "r"
    args = ["--task", f"{PLUGINS}:regression_with_callable_loss", "--iterations", "40", "--step-size", "0.05"]
    done = run_train([*args, "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    rows = _rows(run_dir)
    assert float(rows[-1]["eval_loss"]) < 0.5 * float(rows[9]["eval_loss"])
    assert "the training set (no held-out set given)" in done.stdout


@pytest.mark.parametrize(
    "factory, message",
    [
        ("wrong_type", "the factory returned int; expected a SupervisedProblem, an Objective or a Task"),
        ("wrong_shape_objective", "fn returned shape () for 64 rows; expected [B]"),
        ("nan_objective", "fn returned non-finite rewards at θ₀"),
        ("misfit_model", "the model does not fit the training data: "),
        ("raises", "the factory raised RuntimeError: the user's factory broke"),
        ("nope", f"{PLUGINS!r} has no callable 'nope'"),
    ],
)
def test_bad_factories_are_one_line_errors(tmp_path, factory, message, capsys):
    status, lines = train_in_process(["--task", f"{PLUGINS}:{factory}", "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"hpcars.train: error: --task: {PLUGINS}:{factory}: ") and message in lines[0]
    assert not (tmp_path / "r").exists()


def test_bad_factory_on_two_ranks_exits_2_with_one_line(tmp_path):
    done = run_cli(["--task", f"{PLUGINS}:wrong_type", "--run-dir", str(tmp_path / "r")], ranks=2)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"hpcars.train: error: --task: {PLUGINS}:wrong_type: the factory returned int; "
        "expected a SupervisedProblem, an Objective or a Task"
    ]


def test_unimportable_plugin_module(tmp_path, capsys):
    status, lines = train_in_process(["--task", "no_such_module_xyz:factory", "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 2
    assert lines == [
        "hpcars.train: error: --task: no_such_module_xyz:factory: cannot import 'no_such_module_xyz': "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    ]


def test_plugin_population_and_resume(tmp_path, capsys):
    args = ["--task", f"{PLUGINS}:sphere", "--population", "4", "--generation-every", "3", "--directions", "3"]
    assert train_in_process([*args, "--iterations", "8", "--run-dir", str(tmp_path / "a")], capsys)[0] == 0
    assert train_in_process([*args, "--iterations", "4", "--run-dir", str(tmp_path / "b")], capsys)[0] == 0
    assert train_in_process(["--resume", str(tmp_path / "b"), "--iterations", "8"], capsys)[0] == 0
    a, b = inspect_json(tmp_path / "a"), inspect_json(tmp_path / "b")
    assert a["params_sha256"] == b["params_sha256"] and a["population"]["clonings"] == 2 * 2


@pytest.mark.parametrize("task", ["examples.wine:problem", "examples.rastrigin:objective"])
def test_shipped_examples_run(tmp_path, task, capsys):
    status, lines = train_in_process(["--task", task, "--iterations", "5", "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 0, lines
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["iterations"] == 5


# -- --init-from ------------------------------------------------------------------------------------
def _digits_state_dict(path, hidden=32, seed=3):
    model = digits_problem(0, hidden).model
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    torch.save(model.state_dict(), path)
    return model.state_dict()


@pytest.mark.parametrize("variant", ["v1", "v2"])
def test_init_from_state_dict_loads_exactly(tmp_path, variant):
    state = _digits_state_dict(tmp_path / "w.pt")
    expected = params_sha256(torch.cat([state[n].reshape(-1) for n in state]).numpy())
    cfg = TrainConfig(task="digits", variant=variant, device="cpu", init_from=str(tmp_path / "w.pt"))
    initial = InitialWeights.read(cfg.init_from)
    trainer = ARSTrainer(cfg, make_task(cfg), SingleProcess(), [torch.device("cpu")], initial=initial)
    assert trainer.params_sha256() == expected
    run_dir = tmp_path / "run"
    args = ["--task", "digits", "--variant", variant, "--iterations", "2", "--init-from", str(tmp_path / "w.pt")]
    done = run_cli([*args, "--run-dir", str(run_dir)], ranks=2)
    assert done.returncode == 0, done.stderr
    init = json.loads((run_dir / "summary.json").read_text())["init_from"]
    assert init["params_sha256"] == expected and init["loaded"] == 4 and init["kept"] == []
    assert init["file_sha256"] == InitialWeights.read(str(tmp_path / "w.pt")).file_sha256
    assert inspect_json(run_dir)["init_from"]["params_sha256"] == expected


def test_init_from_wrong_shapes_is_refused_or_partial(tmp_path):
    _digits_state_dict(tmp_path / "w16.pt", hidden=16)
    args = ["--task", "digits", "--iterations", "2", "--init-from", str(tmp_path / "w16.pt")]
    done = run_cli([*args, "--run-dir", str(tmp_path / "a")], ranks=2)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"hpcars.train: error: --init-from: {tmp_path / 'w16.pt'} does not fit"
    )
    assert "0.weight has shape (16, 64) in the file, (32, 64) in the model" in lines[0]
    assert not (tmp_path / "a").exists()
    partial = run_train([*args, "--init-partial", "true", "--run-dir", str(tmp_path / "b")])
    assert partial.returncode == 0, partial.stderr
    assert "1 parameters loaded, 3 kept from the task" in partial.stdout  # only 2.bias (10,) fits


def test_init_from_a_v2_run_carries_parameters_and_statistics(tmp_path):
    first = tmp_path / "first"
    base = ["--task", "digits", "--variant", "v2", "--directions", "4"]
    assert run_train([*base, "--iterations", "5", "--run-dir", str(first)]).returncode == 0
    second = tmp_path / "second"
    done = run_train([*base, "--iterations", "1", "--init-from", str(first), "--run-dir", str(second)])
    assert done.returncode == 0, done.stderr
    init = json.loads((second / "summary.json").read_text())["init_from"]
    assert init["params_sha256"] == inspect_json(first)["params_sha256"]
    with h5py.File(checkpoint_file(first)) as f, h5py.File(checkpoint_file(second)) as g:
        assert g["obs_stat/count"][()] > f["obs_stat/count"][()]  # continued from the first run's statistics


# -- --reward metric ---------------------------------------------------------------------------------
def test_reward_metric_optimises_batch_accuracy(tmp_path):
    run_dir = tmp_path / "r"
    args = ["--task", "digits", "--reward", "metric", "--iterations", "40", "--directions", "16", "--eval-every", "20"]
    done = run_train([*args, "--run-dir", str(run_dir)])
    assert done.returncode == 0, done.stderr
    rows = _rows(run_dir)
    rewards = [float(r["reward_mean"]) for r in rows]
    assert all(0.0 <= r <= 1.0 for r in rewards)  # batch accuracies, not losses
    assert float(rows[-1]["eval_accuracy"]) > 0.3
    refused = run_train(["--reward", "metric", "--run-dir", str(tmp_path / "x")])
    assert refused.returncode == 2 and "--reward: metric needs a task with a metric" in refused.stderr


# -- prioritized mini-batches -------------------------------------------------------------------------------
def test_prioritized_draws_follow_priority_to_the_alpha():
    sampler = PrioritizedBatches(6, PriorityParams(alpha=0.7, beta=0.4, beta_iterations=100))
    sampler.update(torch.arange(6), torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 0.0]))
    p = (np.abs([0.1, 0.5, 1.0, 2.0, 4.0, 0.0]) + 1e-6) ** 0.7
    p /= p.sum()
    draws = 200_000
    indices, weights = sampler.draw(torch.Generator().manual_seed(5), draws, iteration=50)
    counts = np.bincount(indices.numpy(), minlength=6)
    sigma = np.sqrt(draws * p * (1 - p))
    assert np.all(np.abs(counts - draws * p) <= 4 * sigma + 1e-9), (counts, draws * p)
    beta = 0.4 + 0.6 * 50 / 100
    w = (6 * p[indices.numpy()]) ** -beta
    np.testing.assert_allclose(weights.numpy(), w / w.max(), rtol=1e-6)


def test_undrawn_samples_count_as_the_largest_priority():
    sampler = PrioritizedBatches(4, PriorityParams())
    sampler.update(torch.tensor([0, 1]), torch.tensor([3.0, 0.5]))
    np.testing.assert_allclose(sampler.effective(), [3.0 + 1e-6, 0.5 + 1e-6, 3.0 + 1e-6, 3.0 + 1e-6])


def test_priority_needs_a_training_set(tmp_path):
    done = run_train(["--batch-priority", "loss", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hpcars.train: error: --batch-priority: loss needs a finite training set; "
        "regression draws fresh samples every iteration"
    ]


def test_prioritized_resume_is_bit_exact_across_world_sizes(tmp_path):
    base = [
        "--task",
        "digits",
        "--batch-priority",
        "loss",
        "--directions",
        "6",
        "--branch-batch",
        "4",
        "--checkpoint-every",
        "4",
        "--eval-every",
        "4",
    ]
    straight = run_train([*base, "--iterations", "10", "--run-dir", str(tmp_path / "a")])  # 1 rank; resumed on 3
    assert straight.returncode == 0, straight.stderr
    assert run_train([*base, "--iterations", "4", "--run-dir", str(tmp_path / "b")]).returncode == 0
    resumed = run_cli(["--resume", str(tmp_path / "b"), "--iterations", "10"], ranks=3)
    assert resumed.returncode == 0, resumed.stderr
    assert inspect_json(tmp_path / "a")["params_sha256"] == inspect_json(tmp_path / "b")["params_sha256"]
    with h5py.File(checkpoint_file(tmp_path / "a")) as f, h5py.File(checkpoint_file(tmp_path / "b")) as g:
        a, b = np.asarray(f["task/priorities"]), np.asarray(g["task/priorities"])
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).sum() > 0 and not math.isclose(np.nanmax(a), np.nanmin(a))
