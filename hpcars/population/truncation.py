"""Genetic truncation selection, with optional PBT-style perturbation of the clones.

Truncation selection (Mühlenbein & Schlierkamp-Voosen 1993) as used by the seed
project — "kill the worse half each epoch and replace it with clones of the best" —
and the exploit/explore step of Population Based Training (Jaderberg et al. 2017,
arXiv 1711.09846): a clone's step size α and noise ν are each multiplied by 0.8 or
1.2 at random.

Every ``every`` iterations the members are ranked by fitness (best first;
non-finite fitness last; ties to the lower index). The worst ``floor(kill_fraction
· M)`` are replaced — exactly that many, never the best. A replaced member's parent
is the best member (``clone_from = "best"``, the seed's rule) or a survivor drawn
uniformly (``"top"``). The child copies the parent's parameters, α, ν and search
state; its own noise stream (its index) is unchanged, so it explores differently
from the parent from the next iteration on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLONE_FROM = ("best", "top")
#: what members are ranked on (``--rank-by``): the training reward, or the return with the shift given back
RANK_BY = ("reward", "return")
PBT_FACTORS = (0.8, 1.2)


@dataclass(frozen=True)
class TruncationParams:
    every: int = 0  # iterations per generation; 0 = off
    kill_fraction: float = 0.5
    clone_from: str = "best"
    perturb: bool = False  # PBT: multiply a clone's α and ν by 0.8 or 1.2

    @property
    def enabled(self) -> bool:
        return self.every > 0 and self.kill_fraction > 0


@dataclass(frozen=True)
class Generation:
    """One truncation: ``children[i]`` becomes a clone of ``parents[i]``."""

    children: np.ndarray  # int64, ascending
    parents: np.ndarray  # int64
    step_factor: np.ndarray  # multiplier of each child's α (1 without perturbation)
    noise_factor: np.ndarray  # multiplier of each child's ν


def rank(fitness: np.ndarray) -> np.ndarray:
    """Member indices best first: higher fitness first, non-finite last, ties to the lower index."""
    fitness = np.asarray(fitness, dtype=np.float64)
    key = np.where(np.isfinite(fitness), -fitness, np.inf)
    return np.lexsort((np.arange(fitness.size), key))


def killed(members: int, kill_fraction: float) -> int:
    """How many members a generation replaces (at most M − 1: the best always survives)."""
    return min(math.floor(kill_fraction * members + 1e-9), members - 1)


def plan(fitness: np.ndarray, params: TruncationParams, u: np.ndarray) -> Generation:
    """The generation for this fitness; ``u`` is [M, 3] agreed uniforms (row = child)."""
    ranking = rank(fitness)
    n_kill = killed(len(ranking), params.kill_fraction)
    survivors = ranking[: len(ranking) - n_kill]
    children = np.sort(ranking[len(ranking) - n_kill :]).astype(np.int64)
    if params.clone_from == "best":
        parents = np.full(children.size, survivors[0], dtype=np.int64)
    else:
        pick = np.minimum((u[children, 0] * survivors.size).astype(np.int64), survivors.size - 1)
        parents = survivors[pick].astype(np.int64)
    ones = np.ones(children.size)
    if not params.perturb:
        return Generation(children, parents, ones, ones)
    low, high = PBT_FACTORS
    step_factor = np.where(u[children, 1] < 0.5, low, high)
    noise_factor = np.where(u[children, 2] < 0.5, low, high)
    return Generation(children, parents, step_factor, noise_factor)
