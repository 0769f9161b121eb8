"""Small tasks with known rewards, for checking the engine against references."""

from __future__ import annotations

import torch
from torch import nn

from hpcars.tasks.base import BranchOutcome


class Vector(nn.Module):
    """A model that is just its parameter vector."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(size))

    def forward(self, unused: torch.Tensor) -> torch.Tensor:
        return self.theta


class Quadratic:
    """reward(θ) = −Σ (θ − c)², computed in float64; optional NaN branch for guards."""

    name = "quadratic"
    input_dim = 1
    sample_unit = "samples"

    def __init__(self, size: int = 7, nan_branch: int | None = None) -> None:
        self.size = size
        self.center = torch.linspace(-1.0, 2.0, size, dtype=torch.float64)
        self.nan_branch = nan_branch

    def build_model(self) -> nn.Module:
        return Vector(self.size)

    def begin_iteration(self, iteration, member, device):
        return torch.zeros(1, 1, device=device)

    def rewards(self, model, stack, context) -> BranchOutcome:
        out = model(stack, context).double()
        rewards = -((out - self.center.to(out.device)) ** 2).sum(dim=1)
        if self.nan_branch is not None:
            rewards[:] = float("nan")
        return BranchOutcome(rewards, torch.ones_like(rewards))

    def training_inputs(self, context):
        return context

    def evaluate(self, model, flat):
        return {"distance": float(((flat.double().cpu() - self.center) ** 2).sum())}

    def describe(self, model, flat):
        return ""

    def reward_numpy(self, theta):
        return -float(((theta.astype("float64") - self.center.numpy()) ** 2).sum())
