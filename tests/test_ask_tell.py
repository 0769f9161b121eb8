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
    with pytest.raises(hpcars.ConfigError, match=r"top_directions: must be in \[0, directions=2\] \(got 3\)"):
        hpcars.ARS(num_params=3, directions=2, top_directions=3)
    with pytest.raises(hpcars.ConfigError, match="init: must hold num_params=3 values"):
        hpcars.ARS(num_params=3, init=np.zeros(4))
