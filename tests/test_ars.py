import numpy as np
import pytest
import torch

from hpcars.algorithm.ars import SKIP_NONFINITE, SKIP_ZERO_STD, ARSHyper, ars_step, select_top
from hpcars.config import TrainConfig
from hpcars.errors import NonFiniteRewardError
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from tests import reference
from tests.tasks_for_tests import Quadratic


def test_select_top_keeps_exactly_b_with_lower_index_on_ties():
    r_plus = np.array([1.0, 5.0, 3.0, 5.0, 0.0])
    r_minus = np.array([2.0, 0.0, 5.0, 1.0, 5.0])
    # scores 2, 5, 5, 5, 5: four tie at 5; b=2 keeps the two lowest indices among them
    np.testing.assert_array_equal(select_top(r_plus, r_minus, 2), [1, 2])
    np.testing.assert_array_equal(select_top(r_plus, r_minus, 5), [0, 1, 2, 3, 4])


def test_step_weights_follow_algorithm_2():
    r_plus = np.array([3.0, -1.0, 4.0, 0.5])
    r_minus = np.array([1.0, 2.0, 0.0, 0.0])
    step = ars_step(r_plus, r_minus, ARSHyper(0.1, 0.05, 4, 2))
    np.testing.assert_array_equal(step.kept, [0, 2])
    sigma = np.std([3.0, 4.0, 1.0, 0.0])
    assert step.sigma_r == pytest.approx(sigma)
    np.testing.assert_allclose(step.weights, 0.1 / (2 * sigma) * np.array([2.0, 4.0]))


def test_guards_skip_instead_of_nan():
    hyper = ARSHyper(0.1, 0.05, 3, 3)
    flat = ars_step(np.ones(3), np.ones(3), hyper)
    assert flat.skipped == SKIP_ZERO_STD and flat.weights.size == 0
    bad = ars_step(np.array([1.0, np.nan, 2.0]), np.zeros(3), hyper)
    assert bad.skipped == SKIP_NONFINITE
    inf = ars_step(np.array([1.0, np.inf, 2.0]), np.zeros(3), hyper)
    assert inf.skipped == SKIP_NONFINITE


def _trainer(task, **overrides):
    cfg = TrainConfig(device="cpu", **overrides)
    return ARSTrainer(cfg, task, SingleProcess(), [torch.device("cpu")])


@pytest.mark.parametrize("n,b", [(8, 8), (9, 4), (5, 1)])
def test_engine_agrees_with_numpy_reference(n, b):
    task = Quadratic(size=7)
    trainer = _trainer(task, seed=5, directions=n, top_directions=b, step_size=0.05, noise_std=0.1, branch_batch=4)
    theta = np.zeros(7, dtype=np.float32)
    for j in range(6):
        trainer.step()
        theta = reference.ars_iteration(theta, task.reward_numpy, seed=5, iteration=j, alpha=0.05, nu=0.1, n=n, b=b)
        np.testing.assert_allclose(trainer.theta.numpy(), theta, rtol=1e-5, atol=1e-7)
    assert trainer.evaluate()["distance"] < float((task.center**2).sum())


def test_nonfinite_rewards_skip_or_fail():
    skipper = _trainer(Quadratic(nan_branch=5), directions=4)
    record = skipper.step()
    assert record.skipped == SKIP_NONFINITE
    assert torch.equal(skipper.theta, torch.zeros(7))
    assert skipper.skipped_steps == 1
    failer = _trainer(Quadratic(nan_branch=5), directions=4, on_nonfinite="fail")
    with pytest.raises(NonFiniteRewardError, match=r"iteration 0: non-finite reward in branches \[5\]$"):
        failer.step()


def test_a_nonfinite_branch_skips_only_its_members_step():
    t = _trainer(Quadratic(nan_branch=8 + 3), directions=4, population=2)  # member 1's fourth branch
    record = t.step()
    assert record.skipped == SKIP_NONFINITE and t.skipped_steps == 1
    assert torch.equal(t.state.theta[1], torch.zeros(7))
    assert not torch.equal(t.state.theta[0], torch.zeros(7))
