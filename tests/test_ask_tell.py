"""``hpcars.ARS``: the engine's noise, rule and arithmetic behind ask/tell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hpcars
from hpcars.algorithm.branches import BatchedModel
from hpcars.algorithm.perturbation import LowRankBranches
from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from tests.tasks_for_tests import Affine, MatrixTarget, Quadratic

SETTINGS = dict(directions=6, top_directions=4, step_size=0.05, noise_std=0.05, seed=5, branch_batch=3)


def quadratic_rewards(thetas: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """What ``Quadratic.rewards`` computes for the same rows."""
    return -((thetas.double() - center) ** 2).sum(dim=1)


def test_ask_tell_reproduces_the_engine_bitwise_over_20_iterations():
    task = Quadratic(size=12)
    trainer = ARSTrainer(TrainConfig(device="cpu", **SETTINGS), task, SingleProcess(), [torch.device("cpu")])
    ars = hpcars.ARS(num_params=12, init=torch.zeros(12), **SETTINGS)
    for _ in range(20):
        trainer.step()
        ars.tell(quadratic_rewards(ars.ask(), task.center))
        assert torch.equal(ars.theta, trainer.theta)
    assert ars.iteration == 20 and task.distance(ars.theta) < float((task.center**2).sum())


def test_shares_of_the_rows_make_the_whole():
    ars = hpcars.ARS(num_params=5, directions=7, seed=1)
    whole = ars.ask()
    parts = [ars.ask(rank, 3) for rank in range(3)]
    assert [len(ars.share(rank, 3)) for rank in range(3)] == [4, 4, 6]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.shape == (14, 5) and whole.dtype == np.float32  # no init: NumPy in, NumPy out


def test_antithetic_rows_and_numpy_in_numpy_out():
    ars = hpcars.ARS(num_params=4, directions=3, noise_std=0.1, init=np.ones(4))
    rows = ars.ask()
    assert isinstance(rows, np.ndarray) and isinstance(ars.theta, np.ndarray)
    np.testing.assert_allclose(rows[0::2] + rows[1::2], 2.0, atol=1e-6)  # θ + νδ and θ − νδ
    step = ars.tell(np.arange(6.0))
    assert step.skipped == "" and ars.theta.shape == (4,)


def test_state_dict_continues_exactly_and_refuses_other_settings():
    center = torch.linspace(-1.0, 2.0, 9, dtype=torch.float64)
    a = hpcars.ARS(num_params=9, init=torch.zeros(9), **SETTINGS)
    for _ in range(3):
        a.tell(quadratic_rewards(a.ask(), center))
    b = hpcars.ARS(num_params=9, init=torch.zeros(9), **SETTINGS)
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        a.tell(quadratic_rewards(a.ask(), center))
        b.tell(quadratic_rewards(b.ask(), center))
    assert torch.equal(a.theta, b.theta) and b.iteration == 6
    other = hpcars.ARS(num_params=9, **{**SETTINGS, "seed": 6})
    with pytest.raises(hpcars.ConfigError, match="state: made with other settings: seed"):
        other.load_state_dict(a.state_dict())


def test_skips_and_bad_input():
    ars = hpcars.ARS(num_params=3, directions=2)
    assert ars.tell([1.0, 1.0, 1.0, 1.0]).skipped == "zero-reward-std"
    assert ars.tell([1.0, float("nan"), 0.0, 2.0]).skipped == "nonfinite-reward"
    assert np.array_equal(ars.theta, np.zeros(3, dtype=np.float32))
    with pytest.raises(hpcars.ConfigError, match=r"rewards: expected 4 \(2N\) rewards, got shape \(3,\)"):
        ars.tell([1.0, 2.0, 3.0])
    with pytest.raises(
        hpcars.ConfigError, match=r"top_directions: must be an integer in \[0, directions=2\] \(got 3\)"
    ):
        hpcars.ARS(num_params=3, directions=2, top_directions=3)
    with pytest.raises(hpcars.ConfigError, match="init: must hold num_params=3 values"):
        hpcars.ARS(num_params=3, init=np.zeros(4))


def test_numpy_integers_are_integers_and_the_settings_become_plain_numbers():
    ars = hpcars.ARS(num_params=np.int64(12), directions=np.int32(4), top_directions=np.int64(2), seed=np.uint8(5))
    assert ars.params.num_params == 12 and type(ars.params.num_params) is int and type(ars.params.seed) is int
    assert ars.ask().shape == (8, 12)
    same = hpcars.ARS(num_params=12, directions=4, top_directions=2, seed=5)
    np.testing.assert_array_equal(ars.ask(), same.ask())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_params": True}, r"num_params: must be an integer >= 1 \(got True\)"),
        ({"num_params": 12.0}, r"num_params: must be an integer >= 1 \(got 12.0\)"),
        ({"num_params": 0}, r"num_params: must be an integer >= 1 \(got 0\)"),
        ({"directions": "8"}, r"directions: must be an integer >= 1 \(got '8'\)"),
        ({"top_directions": 2.0}, r"top_directions: must be an integer in \[0, directions=32\] \(got 2.0\)"),
        ({"top_directions": -1}, r"top_directions: must be an integer in \[0, directions=32\] \(got -1\)"),
        ({"step_size": float("inf")}, r"step_size: must be a finite number > 0 \(got inf\)"),
        ({"noise_std": float("inf")}, r"noise_std: must be a finite number > 0 \(got inf\)"),
        ({"noise_std": float("nan")}, r"noise_std: must be a finite number > 0 \(got nan\)"),
        ({"step_size": True}, r"step_size: must be a finite number > 0 \(got True\)"),
        ({"step_size": "0.1"}, r"step_size: must be a finite number > 0 \(got '0.1'\)"),
        ({"seed": 2**64 + 3}, r"seed: must be an integer in \[0, 2\*\*63\) \(got 18446744073709551619\)"),
        ({"seed": -1}, r"seed: must be an integer in \[0, 2\*\*63\) \(got -1\)"),
        ({"seed": 1.5}, r"seed: must be an integer in \[0, 2\*\*63\) \(got 1.5\)"),
        ({"branch_batch": 0}, r"branch_batch: must be an integer >= 1 \(got 0\)"),
        ({"init": np.array([0.0, np.nan, 0.0, 0.0])}, r"init: must hold finite values"),
        ({"init": ["a", "b", "c", "d"]}, r"init: must be num_params=4 numbers"),
    ],
)
def test_every_bad_setting_is_refused_in_one_line(settings, message):
    with pytest.raises(hpcars.ConfigError, match=message):
        hpcars.ARS(**{"num_params": 4, **settings})


def test_tell_refuses_rewards_that_are_not_numbers():
    ars = hpcars.ARS(num_params=3, directions=2)
    with pytest.raises(hpcars.ConfigError, match=r"rewards: must be 4 \(2N\) rewards"):
        ars.tell(["a", "b", "c", "d"])


def test_load_state_dict_refuses_a_wrong_theta_and_a_state_without_its_settings():
    ars = hpcars.ARS(num_params=4, directions=2, seed=3)
    state = ars.state_dict()
    with pytest.raises(hpcars.ConfigError, match=r"state: theta holds 5 values, expected num_params=4"):
        ars.load_state_dict({**state, "theta": torch.zeros(5)})
    no_seed = {k: v for k, v in state["params"].items() if k != "seed"}
    with pytest.raises(hpcars.ConfigError, match=r"state: params lack seed"):
        ars.load_state_dict({**state, "params": no_seed})
    with pytest.raises(hpcars.ConfigError, match=r"state: lacks iteration"):
        ars.load_state_dict({k: v for k, v in state.items() if k != "iteration"})
    with pytest.raises(hpcars.ConfigError, match=r"state: iteration must be an integer >= 0 \(got -2\)"):
        ars.load_state_dict({**state, "iteration": -2})
    ars.load_state_dict({**state, "iteration": 4})  # and a good one still loads
    assert ars.iteration == 4


@pytest.mark.parametrize("fitness", ["ars", "zscore"])
def test_low_rank_ask_tell_is_the_engine_path_bitwise(fitness):
    """``module=`` + ``perturbation="lowrank"``: ``ask`` hands out factors on the module's shared
    weights, a user evaluates them with ``BatchedModel``, and θ follows the engine's bits."""
    settings = dict(SETTINGS, branch_batch=16, top_directions=4 if fitness == "ars" else 0)
    task = MatrixTarget()
    cfg = TrainConfig(device="cpu", perturbation="lowrank", perturbation_rank=2, fitness=fitness, **settings)
    trainer = ARSTrainer(cfg, task, SingleProcess(), [torch.device("cpu")])
    module = task.build_model()
    ars = hpcars.ARS(module=module, perturbation="lowrank", rank=2, fitness=fitness, **settings)
    model, eye = BatchedModel(module, torch.device("cpu")), torch.eye(task.inputs)
    start = ars.theta
    for _ in range(5):
        trainer.step()
        branches = ars.ask()
        assert isinstance(branches, LowRankBranches) and len(branches.owner) == 12
        ars.tell(task.outcome(model(branches, eye)).rewards)
        assert torch.equal(ars.theta, trainer.theta)
    assert not torch.equal(ars.theta, start)


def test_low_rank_branches_are_the_dense_rows_they_stand_for():
    """``ask``'s factors, built in full, are θ ± ν·(a rank-R direction) in antithetic pairs."""
    module = Affine(4, 3)
    ars = hpcars.ARS(module=module, perturbation="lowrank", rank=2, directions=3, noise_std=0.1, seed=3)
    rows = ars.ask().dense()
    theta = ars.theta
    assert rows.shape == (6, 15)
    torch.testing.assert_close(rows[0::2] + rows[1::2], 2 * theta.expand(3, -1), rtol=0, atol=1e-6)
    weight = (rows[0] - theta)[:12].reshape(3, 4)  # the direction's weight part is a rank-2 matrix
    assert int(torch.linalg.matrix_rank(weight.double(), rtol=1e-6)) == 2


def test_normalize_keeps_the_inputs_statistics_and_resumes_them():
    """V2 in ask/tell: ``tell(..., inputs=)`` merges the inputs' statistics after the step;
    ``normaliser`` is the engine's (mean, 1/std); ``state_dict`` carries them."""
    rng = np.random.default_rng(0)
    ars = hpcars.ARS(num_params=3, directions=2, normalize=2, seed=1)
    seen = [rng.normal([1.0, -2.0], [0.5, 3.0], size=(50, 2)) for _ in range(4)]
    for batch in seen:
        ars.ask()
        ars.tell(np.arange(4.0), inputs=batch)
    mean, inv_std = ars.normaliser
    every = np.concatenate(seen)
    np.testing.assert_allclose(mean, every.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(inv_std, 1 / every.std(axis=0), rtol=1e-6)
    again = hpcars.ARS(num_params=3, directions=2, normalize=2, seed=1)
    again.load_state_dict(ars.state_dict())
    np.testing.assert_array_equal(again.normaliser[0], mean)
    with pytest.raises(hpcars.ConfigError, match="inputs"):
        ars.tell(np.arange(4.0), inputs=np.zeros((5, 3)))
    with pytest.raises(hpcars.ConfigError, match="normalize"):
        _ = hpcars.ARS(num_params=3).normaliser


def test_group_zscore_needs_the_rewards_per_prompt():
    ars = hpcars.ARS(num_params=3, directions=2, fitness="group-zscore", seed=1)
    ars.ask()
    with pytest.raises(hpcars.ConfigError, match="groups"):
        ars.tell(np.arange(4.0))
    step = ars.tell(np.arange(4.0), groups=np.arange(8.0).reshape(4, 2) % 3)
    assert step.skipped == ""
