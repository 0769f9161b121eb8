"""Annealing's judge: old and new parameters scored on common random numbers.

Simulated annealing decides whether to keep a member's last step θ → θ' by how much
it worsened the fitness. Compared on different mini-batches (or episode seeds), the
batch-to-batch noise reads as worsening and good steps are reverted; compared on the
same ones, that noise cancels (common random numbers; Law & Kelton, "Simulation
Modeling and Analysis", ch. 11).

So with annealing on, every member's branches in an iteration are its 2N perturbed
branches followed by J judge pairs, and pair k is scored twice with the same
randomness: once at the anchor θ (where the member was before its pending step) and
once at its current θ'. The judge rows ride in the iteration's ordinary branch
gather — they are scored by whichever ranks own them, with the iteration's own
context (supervised: the iteration's mini-batch; RL: the same episode, i.e. initial
state, for both sides) — and they are training episodes, counted as such.

Global branch g of a population of M members lays out as

    member m = g // per_member,  slot s = g % per_member,  per_member = 2N + 2J
    s < 2N          : perturbed branch s of member m (θ_m ± ν δ), episode id g
    s = 2N + 2k + 0 : judge pair k, old side (the anchor),          episode id g
    s = 2N + 2k + 1 : judge pair k, new side (the current θ_m),     episode id g − 1

Without annealing J = 0, and the layout and episode ids are those of plain ARS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PERTURBED, OLD, NEW = 0, 1, 2


@dataclass(frozen=True)
class BranchLayout:
    directions: int  # N
    judge_pairs: int  # J; 0 without annealing

    @property
    def per_member(self) -> int:
        return 2 * self.directions + 2 * self.judge_pairs

    def member(self, branch: int) -> int:
        return branch // self.per_member

    def kind(self, branch: int) -> int:
        """PERTURBED, OLD or NEW."""
        slot = branch % self.per_member - 2 * self.directions
        return PERTURBED if slot < 0 else (OLD if slot % 2 == 0 else NEW)

    def episode_ids(self, branches: Sequence[int]) -> list[int]:
        """The randomness each branch sees: both sides of a judge pair get the old side's id."""
        return [g - 1 if self.kind(g) == NEW else g for g in branches]

    def split(self, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A member-major reward row [M · per_member] -> (perturbed [M, 2N], judge [M, J, 2] (old, new))."""
        by_member = rewards.reshape(-1, self.per_member)
        perturbed = by_member[:, : 2 * self.directions]
        judge = by_member[:, 2 * self.directions :].reshape(len(by_member), self.judge_pairs, 2)
        return perturbed, judge


def judged_worsening(judge: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per member, Δ = (f(θ) − f(θ')) / s from its judge pairs [M, J, 2]: the mean paired
    difference, in units of the member's reward scale s (so a temperature is task-free)."""
    return (judge[:, :, 0] - judge[:, :, 1]).mean(axis=1) / scale
