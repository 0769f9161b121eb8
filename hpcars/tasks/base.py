"""What the trainer asks of a task.

A task owns a model template and knows how to score a stack of parameter vectors
and how to evaluate the unperturbed parameters. The trainer owns θ, the noise, the
update, the transport and the V2 statistics; it never looks inside the model.

Evaluation is split into *units* (the held-out set is one unit; an RL evaluation
episode is one unit) so the trainer can spread them over the ranks and gather one
row per unit (columns ``eval_fields``); ``summarize`` turns all rows into the
metrics. Every summary has a ``score`` (higher is better: −loss for regression,
accuracy for digits, mean return for RL) that ``--target`` is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.runningstat import RunningStat


@dataclass(frozen=True)
class ObsMoments:
    """Per-branch moments of the inputs a branch saw: count [B], mean [B, d], m2 [B, d]."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray

    def merged(self) -> RunningStat:
        """All branches' moments as one, merged in branch order: what one update adds to the
        V2 statistics (and all the asynchronous mode sends and logs of them)."""
        total = RunningStat.empty(self.mean.shape[1])
        for count, mean, m2 in zip(self.count, self.mean, self.m2, strict=True):
            total = total.merge(RunningStat(float(count), mean, m2))
        return total


@dataclass(frozen=True)
class BranchOutcome:
    """Scores of B branches: rewards, samples (or env steps) consumed, and input moments."""

    rewards: np.ndarray  # float64 [B]
    samples: np.ndarray  # float64 [B]
    obs: ObsMoments | None  # None when the task does not track them (e.g. RL with V1)
    groups: np.ndarray | None = None  # per-prompt rewards [B, K] (language tasks; --fitness group-zscore)


class Task(Protocol):
    name: str
    #: width of the model input that V2 normalises
    input_dim: int
    #: what the "samples" column counts ("samples", "env steps")
    sample_unit: str
    #: training episodes per branch (RL: 1; supervised: 0)
    episodes_per_branch: int
    #: how many evaluation units one evaluation has, and the columns of a unit's row
    eval_units: int
    eval_fields: tuple[str, ...]
    #: the metrics ``summarize`` returns, in order (the first is always "score")
    eval_columns: tuple[str, ...]

    def build_model(self) -> nn.Module:
        """A fresh model, initialised deterministically from the run seed."""
        ...

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Any:
        """Per-iteration context shared by all branches (e.g. the mini-batch)."""
        ...

    def rewards(self, model: BatchedModel, stack: Stack, context: Any, branches: Sequence[int]) -> BranchOutcome:
        """Score the first ``len(branches)`` rows of ``stack`` (rows past that are padding)."""
        ...

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        """Rows [len(units), len(eval_fields)] for these evaluation units."""
        ...

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        """All units' rows -> metrics (keys ``eval_columns``)."""
        ...

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        """A line or two a person can judge the result by."""
        ...
