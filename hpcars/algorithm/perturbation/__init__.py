"""Perturbation kinds: what a direction δ_k is, how a branch θ + sνδ_k is handed to the model,
and how the update Σ_k w_k δ_k is formed (``--perturbation``).

* ``dense`` (``dense.py``): one normal per parameter; branches are a [B, P] stack.
* ``lowrank`` (``lowrank.py``): a rank-R product A Bᵀ/√R per weight matrix, dense noise for
  the other parameters; branches share the base weights.

Both draw a direction's normals from ``hpcars.algorithm.noise`` (``noise_size`` of them) and
answer the same calls — ``width(branch_batch)`` (branches per batched call),
``branches(bases, owner, scale, directions, which)``, ``step(weights, draw, total)`` and
``update_size()`` (entries of the step vector) — so no loop knows which one it runs.
"""

from __future__ import annotations

from torch import nn

from hpcars.algorithm.branches import ParamSpec
from hpcars.algorithm.perturbation.dense import Dense, Draw
from hpcars.algorithm.perturbation.lowrank import LowRank, LowRankBranches

Perturbation = Dense | LowRank

__all__ = ["Dense", "Draw", "LowRank", "LowRankBranches", "Perturbation", "make_perturbation"]


def make_perturbation(
    kind: str,
    module: nn.Module,
    size: int,
    rank: int,
    budget: int | None = None,
    compressed: bool = False,
) -> Perturbation:
    """The kind ``kind`` for ``module`` searched in ``size`` dimensions (``compressed``: a search
    space that expands each branch to the model's parameters), dense branches within ``budget``
    bytes (``--branch-memory``; low rank's branches share the weights and are not bounded by it).
    A model without weight matrices gets dense noise either way (low rank would be the same
    directions)."""
    spec = ParamSpec.of(module)
    if kind == "lowrank":
        low = LowRank.of(module, rank)
        if any(piece.rows for piece in low.pieces):
            return low
    return Dense(size, budget, spec.size if compressed else 0)
