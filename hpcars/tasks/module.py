"""A model you already have and a score for it: ``hpcars.fit(model, reward=score)``.

For models that are neither a supervised problem (no data and loss) nor written as
an ``Objective`` over flat vectors — a pretrained network judged by a simulator, a
verifier, a human — hpcars searches the module's parameters directly:
``reward(model, context) -> float`` is called once per branch with the module's
parameters set to that branch's θ (in place, on hpcars' own copy of the module, under
``torch.no_grad()``), and higher is better. ``context`` is the ``ObjectiveContext`` of the call: its seed is the
same for every branch of an iteration, so a stochastic score compares the branches
on common random numbers.

This is the simple door, one forward per branch; a task that scores many branches
in one batched call is a ``Task`` (``hpcars.tasks.base``) or an ``Objective``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from hpcars.algorithm.branches import ParamSpec
from hpcars.tasks.problems import Objective, ObjectiveContext

ModuleReward = Callable[[nn.Module, ObjectiveContext], float]


def module_objective(model: nn.Module, reward: ModuleReward, name: str = "") -> Objective:
    """An ``Objective`` over ``model``'s parameters (θ₀ = its current ones); ``model`` itself is never changed."""
    work = copy.deepcopy(model).eval()
    spec = ParamSpec.of(work)
    init = spec.flatten(work).detach().to("cpu", torch.float32).clone()

    def score(thetas: torch.Tensor, context: ObjectiveContext) -> list[float]:
        rewards = []
        with torch.no_grad():
            for row in thetas:
                spec.load(work, row)
                rewards.append(float(reward(work, context)))
        return rewards

    return Objective(size=spec.size, fn=score, init=init, name=name or type(model).__name__)


def loaded_copy(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """A copy of ``model`` holding the flat parameters ``flat`` (in ``ParamSpec`` order)."""
    out = copy.deepcopy(model).eval()
    ParamSpec.of(out).load(out, torch.as_tensor(flat, dtype=torch.float32))
    return out
