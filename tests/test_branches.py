import numpy as np
import pytest
import torch

from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.models import Normalized, mlp
from hpcars.algorithm.noise import NoiseSource
from hpcars.tasks.sampling import PriorityParams
from hpcars.tasks.supervised import ProblemTask, Regression, digits_problem


def _looped(module, spec, stack, x):
    """The seed project's way: load each branch into the module and call it."""
    outs = []
    for row in stack:
        spec.load(module, row)
        with torch.no_grad():
            outs.append(module(x))
    return torch.stack(outs)


@pytest.mark.parametrize(
    "module,x",
    [
        (torch.nn.Linear(4, 1), torch.randn(64, 4)),
        (mlp([6, 16, 16, 3]), torch.randn(32, 6)),
        (Normalized(mlp([5, 8, 2]), 5), torch.randn(10, 5)),
    ],
)
def test_batched_equals_looped(module, x):
    spec = ParamSpec.of(module)
    theta = spec.flatten(module)
    stack = theta + 0.1 * NoiseSource(0).directions(0, 0, range(12), spec.size)
    model = BatchedModel(module, torch.device("cpu"))
    assert model.stacked  # these all take the einsum fast path
    looped = _looped(module, spec, stack, x)
    torch.testing.assert_close(model(stack, x), looped, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model._batched(stack, x, shared=True, use_vmap=True), looped, rtol=1e-5, atol=1e-6)
    # each branch its own input (as RL rollouts are)
    per = torch.randn(12, *x.shape[1:])
    expected = torch.stack([_looped(module, spec, stack[b : b + 1], per[b])[0] for b in range(12)])
    torch.testing.assert_close(model.per_branch(stack, per), expected, rtol=1e-5, atol=1e-6)


class Custom(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 5)
        self.norm = torch.nn.LayerNorm(5)

    def forward(self, x):
        return torch.cos(self.norm(self.a(x))).sum(-1, keepdim=True)


def test_any_module_goes_through_vmap():
    module = Custom()
    spec = ParamSpec.of(module)
    stack = spec.flatten(module) + 0.1 * NoiseSource(2).directions(0, 0, range(5), spec.size)
    x = torch.randn(7, 3)
    model = BatchedModel(module, torch.device("cpu"))
    assert not model.stacked
    torch.testing.assert_close(model(stack, x), _looped(module, spec, stack, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "task",
    [
        Regression(0, 256),
        ProblemTask(digits_problem(0), seed=0, batch_size=64),
        ProblemTask(digits_problem(0), seed=0, batch_size=64, reward="metric"),
        ProblemTask(digits_problem(0), seed=0, batch_size=64, priority=PriorityParams()),
    ],
    ids=["regression", "digits", "digits-metric", "digits-prioritized"],
)
def test_task_rewards_batched_equal_looped(task):
    model = task.build_model()
    spec = ParamSpec.of(model)
    stack = spec.flatten(model) + 0.05 * NoiseSource(1).directions(0, 0, range(6), spec.size)
    batch = task.begin_iteration(3, 0, torch.device("cpu"))
    batched = task.rewards(BatchedModel(model, torch.device("cpu")), stack, batch, range(6)).rewards
    looped = [task.rewards(BatchedModel(model, torch.device("cpu")), row[None], batch, [0]).rewards[0] for row in stack]
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


def test_flatten_unflatten_roundtrip():
    module = mlp([3, 4, 2])
    spec = ParamSpec.of(module)
    flat = spec.flatten(module)
    assert flat.numel() == spec.size == 3 * 4 + 4 + 4 * 2 + 2
    other = mlp([3, 4, 2])
    spec.load(other, flat)
    assert torch.equal(spec.flatten(other), flat)
    assert spec.names == ("0.weight", "0.bias", "2.weight", "2.bias")
