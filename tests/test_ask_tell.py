"""``hpcars.ARS``: the engine's noise, rule and arithmetic behind ask/tell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hpcars
from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from tests.tasks_for_tests import Quadratic

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
    with pytest.raises(hpcars.ConfigError, match=r"rewards: must be 4 numbers"):
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
