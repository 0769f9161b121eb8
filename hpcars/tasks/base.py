"""What the trainer asks of a task.

A task owns a model template and knows how to score a stack of parameter vectors.
The trainer owns θ, the noise and the update; it never looks inside the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from hpcars.branches import BatchedModel


@dataclass(frozen=True)
class BranchOutcome:
    """Scores of B branches: rewards (float64) and samples or env steps consumed."""

    rewards: torch.Tensor
    samples: torch.Tensor


class Task(Protocol):
    name: str
    #: width of the model input that V2 normalises
    input_dim: int
    #: what the "samples" column counts ("samples", "env steps")
    sample_unit: str

    def build_model(self) -> nn.Module:
        """A fresh model, initialised deterministically from the run seed."""
        ...

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Any:
        """Per-iteration context shared by all branches (e.g. the mini-batch)."""
        ...

    def rewards(self, model: BatchedModel, stack: torch.Tensor, context: Any) -> BranchOutcome:
        """Score every row of ``stack`` ([B, P]) in batched calls."""
        ...

    def training_inputs(self, context: Any) -> torch.Tensor:
        """The inputs seen in training this iteration ([n, input_dim]), for V2 statistics."""
        ...

    def evaluate(self, model: BatchedModel, flat: torch.Tensor) -> dict[str, float]:
        """Held-out metrics of the unperturbed parameters."""
        ...

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        """A line or two a person can judge the result by."""
        ...
