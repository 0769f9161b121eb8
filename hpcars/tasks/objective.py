"""A black-box ``Objective`` (``hpcars.tasks.problems``) as a task.

The model is the parameter vector itself (``Vector``): ARS perturbs θ and the
objective's ``fn`` scores the stack of perturbed vectors directly, always in calls
of exactly ``--branch-batch`` rows. Each iteration's ``ObjectiveContext`` carries
a seed from (run seed, iteration), the same for every branch and every rank.
Evaluation reports ``Objective.evaluate(θ)``, or ``fn`` of θ with an evaluation
context (its own seed stream), as the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.noise import stream_key
from hpcars.errors import ObjectiveRewardError
from hpcars.tasks.base import BranchOutcome
from hpcars.tasks.problems import Objective, ObjectiveContext

CONTEXT_STREAM = 0x0B1E
EVAL_STREAM = 0x0B1F


class Vector(nn.Module):
    """A model that is just its parameter vector."""

    def __init__(self, init: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(init.detach().clone().to(torch.float32).reshape(-1))

    def forward(self, unused: torch.Tensor) -> torch.Tensor:
        return self.theta


def call_objective(objective: Objective, stack: torch.Tensor, context: ObjectiveContext) -> np.ndarray:
    """``fn(stack, context)`` as float64 [len(stack)], checked for its shape."""
    out = objective.fn(stack, context)
    rewards = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    if rewards.shape != (stack.shape[0],):
        raise ObjectiveRewardError(f"fn returned shape {tuple(rewards.shape)} for {stack.shape[0]} rows; expected [B]")
    return rewards


class ObjectiveTask:
    sample_unit = "evaluations"
    episodes_per_branch = 0
    input_dim = 0
    eval_units = 1
    eval_fields: tuple[str, ...] = ("score",)
    eval_columns: tuple[str, ...] = ("score",)

    def __init__(self, objective: Objective, seed: int, branch_batch: int) -> None:
        self.objective = objective
        self.name = objective.name
        self.seed = seed
        self.branch_batch = branch_batch
        init = torch.zeros(objective.size) if objective.init is None else torch.as_tensor(objective.init)
        if init.numel() != objective.size:
            raise ObjectiveRewardError(f"init has {init.numel()} values, size is {objective.size}")
        self.init = init

    def build_model(self) -> nn.Module:
        return Vector(self.init)

    def _context(self, stream: int, iteration: int, evaluation: bool) -> ObjectiveContext:
        seed = stream_key(self.seed ^ stream, iteration, 0, 0) & (2**63 - 1)
        return ObjectiveContext(iteration=iteration, seed=seed, evaluation=evaluation)

    def begin_iteration(self, iteration: int, member: int, device: torch.device | None) -> ObjectiveContext:
        return self._context(CONTEXT_STREAM, iteration, evaluation=False)

    def rewards(
        self, model: BatchedModel, stack: Stack, context: ObjectiveContext, branches: Sequence[int]
    ) -> BranchOutcome:
        n = len(branches)
        dense = stack if isinstance(stack, torch.Tensor) else stack.dense()  # fn takes parameter vectors
        rewards = call_objective(self.objective, dense, context)[:n]
        return BranchOutcome(rewards, np.ones(n), None)

    def score(self, flat: torch.Tensor, iteration: int) -> float:
        if self.objective.evaluate is not None:
            return float(self.objective.evaluate(flat))
        stack = flat[None].expand(self.branch_batch, -1)
        return float(call_objective(self.objective, stack, self._context(EVAL_STREAM, iteration, True))[0])

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        return np.array([[self.score(flat, iteration)] for _ in units], dtype=np.float64)

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        return {"score": float(rows[0, 0])}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        return f"{self.name}: {self.objective.size} parameters, |θ| = {float(flat.norm()):.4g}"
