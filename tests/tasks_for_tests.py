"""Small tasks with known rewards, for checking the engine against references."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hpcars.tasks.base import BranchOutcome, ObsMoments


class Vector(nn.Module):
    """A model that is just its parameter vector."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(size))

    def forward(self, unused: torch.Tensor) -> torch.Tensor:
        return self.theta


class Quadratic:
    """reward(θ) = −Σ (θ − c)², computed in float64; ``nan_branch=g``: global branch g's
    reward is NaN (every iteration), for the guards."""

    name = "quadratic"
    input_dim = 1
    sample_unit = "samples"
    episodes_per_branch = 0
    eval_units = 1
    eval_fields = ("distance",)
    eval_columns = ("score", "distance")

    def __init__(self, size: int = 7, nan_branch: int | None = None) -> None:
        self.size = size
        self.center = torch.linspace(-1.0, 2.0, size, dtype=torch.float64)
        self.nan_branch = nan_branch

    def build_model(self) -> nn.Module:
        return Vector(self.size)

    def begin_iteration(self, iteration, member, device):
        return torch.zeros(1, 1, device=device)

    def rewards(self, model, stack, context, branches) -> BranchOutcome:
        n = len(branches)
        out = model(stack, context).double()[:n]
        rewards = -((out - self.center.to(out.device)) ** 2).sum(dim=1).cpu().numpy()
        for i, branch in enumerate(branches):
            if branch == self.nan_branch:
                rewards[i] = float("nan")
        zeros = np.zeros((n, 1))
        return BranchOutcome(rewards, np.ones(n), ObsMoments(np.ones(n), zeros, zeros))

    def evaluate_units(self, model, flat, units, iteration):
        return np.array([[self.distance(flat)] for _ in units])

    def summarize(self, rows):
        return {"score": -float(rows[0, 0]), "distance": float(rows[0, 0])}

    def distance(self, flat):
        return float(((flat.double().cpu() - self.center) ** 2).sum())

    def describe(self, model, flat):
        return ""

    def reward_numpy(self, theta):
        return -float(((theta.astype("float64") - self.center.numpy()) ** 2).sum())


class Affine(nn.Module):
    """A linear layer read out on the identity: row i of the output is W[:, i] + b."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.layer = nn.Linear(inputs, outputs)

    def forward(self, eye: torch.Tensor) -> torch.Tensor:
        return self.layer(eye)


class MatrixTarget(Quadratic):
    """reward = −Σ (Wᵀ + b − C)² over a linear layer's outputs on the identity: a quadratic whose
    parameters sit in a weight matrix, so ``--perturbation lowrank`` perturbs them by factors."""

    name = "matrix-target"

    def __init__(self, inputs: int = 4, outputs: int = 3) -> None:
        super().__init__(size=inputs * outputs + outputs)
        self.inputs, self.outputs = inputs, outputs
        self.target = torch.linspace(-1.0, 2.0, inputs * outputs, dtype=torch.float64).reshape(inputs, outputs)

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return Affine(self.inputs, self.outputs)

    def begin_iteration(self, iteration, member, device):
        return torch.eye(self.inputs, device=device)

    def rewards(self, model, stack, context, branches) -> BranchOutcome:
        n = len(branches)
        return self.outcome(model(stack, context)[:n])

    def outcome(self, out: torch.Tensor) -> BranchOutcome:
        n = len(out)
        rewards = -((out.double() - self.target.to(out.device)) ** 2).sum(dim=(1, 2)).cpu().numpy()
        zeros = np.zeros((n, 1))
        return BranchOutcome(rewards, np.ones(n), ObsMoments(np.ones(n), zeros, zeros))
