"""Rewards → Δθ → θ: the one place a member's rewards become its step and the step moves θ.

Three pure steps, used alike by the synchronous engine, the asynchronous update log and its
replay, the population layer and ``hpcars.ARS`` (ask/tell):

1. ``member_step``: one member's rewards [2N] (and per-prompt rewards for ``group-zscore``) to
   an ``ars.ARSStep`` — the directions kept and their weights — by ``--fitness``
   (``fitness.shaped_step``); a non-finite reward skips the step, or with
   ``--on-nonfinite fail`` raises ``NonFiniteRewardError`` naming where it happened.
2. ``step_vector``: Σ_k w_k δ_k of those directions, in the perturbation kind's update dtype
   (dense: float64; low rank: float32), the directions regenerated in fixed chunks of ``chunk``
   (``--branch-batch``) and summed in that order: part of a run's bits.
3. ``apply``: θ ← float32(float64(θ) + Δ), in place, in blocks of ``BLOCK`` entries — the bits
   of the whole-vector sum without a float64 copy of a large θ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hpcars.algorithm.ars import SKIP_NONFINITE, ARSHyper, ARSStep
from hpcars.algorithm.fitness import shaped_step
from hpcars.algorithm.perturbation import Perturbation
from hpcars.errors import NonFiniteRewardError

#: entries of θ moved per pass of ``apply``: float64 temporaries of 8 MB, whatever the model's size
BLOCK = 1 << 20
#: directions [indices] of one chunk, only their entries [cols]: [len(indices), len(cols)]
DrawChunk = Callable[[list[int], slice], torch.Tensor]


@dataclass(frozen=True)
class StepRule:
    """What turns a member's rewards into its step, besides its own α and ν."""

    directions: int  # N
    top: int  # b (ARS's top directions; every kind but ``ars`` keeps all N)
    fitness: str = "ars"
    on_nonfinite: str = "skip"  # or "fail"


def member_step(
    rule: StepRule,
    rewards: np.ndarray,
    step_size: float,
    noise_std: float,
    groups: np.ndarray | None = None,
    where: str = "",
    first_branch: int = 0,
) -> ARSStep:
    """One member's step from its rewards [2N] (branch order: +δ_k, −δ_k) with its α and ν;
    ``where`` and ``first_branch`` (the global id of its branch 0) name a failure."""
    step = shaped_step(rule.fitness, rewards, ARSHyper(step_size, noise_std, rule.directions, rule.top), groups)
    if step.skipped == SKIP_NONFINITE and rule.on_nonfinite == "fail":
        bad = (first_branch + np.flatnonzero(~np.isfinite(np.asarray(rewards, dtype=np.float64)))).tolist()
        raise NonFiniteRewardError(f"{where}: non-finite reward in branches {bad}")
    return step


def step_vector(
    perturbation: Perturbation, step: ARSStep, draw: DrawChunk, chunk: int, device: torch.device
) -> torch.Tensor:
    """Σ_k w_k δ_k of ``step`` (the kind's ``update_dtype`` [size]), the kept directions drawn in
    chunks of ``chunk``; zeros for a skipped step."""
    total = torch.zeros(perturbation.update_size, dtype=perturbation.update_dtype, device=device)
    for start in range(0, len(step.kept), chunk):
        kept = step.kept[start : start + chunk].tolist()
        weights = torch.as_tensor(step.weights[start : start + chunk], device=device)

        def entries(cols: slice, kept: list[int] = kept) -> torch.Tensor:
            return draw(kept, cols)

        perturbation.step(weights, entries, total)
    return total


def apply(theta: torch.Tensor, delta: torch.Tensor) -> None:
    """θ ← float32(float64(θ) + Δ) in place, in blocks."""
    for start in range(0, theta.numel(), BLOCK):
        part = theta[start : start + BLOCK]
        part.copy_(part.to(torch.float64) + delta[start : start + BLOCK])
