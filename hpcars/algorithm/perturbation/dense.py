"""Dense perturbations (``--perturbation dense``, the default): δ_k has one normal per parameter.

Branch b is θ + sν δ_k in full — a [w, P] stack per batched call, as ARS has always been run —
and the update Σ_k w_k δ_k is a [b] × [b, P] product in float64.

Memory is bounded by ``--branch-memory`` (``budget`` bytes): a call holds at most ``width``
branches (each costs its row of the stack plus its share of the directions and the forward's
copies, ~12 bytes a parameter; in a compressed search space, ~12 bytes per searched entry
plus ~8 per model parameter, for the [width, P] parameters the space expands the stack to and
the forward's copy of them), down to one pair θ + νδ_k, θ − νδ_k — one model and one
direction beside θ, which itself is never written, so there is nothing to restore. The update
draws its directions in column blocks (``noise.ALIGN``) when [b, P] would not fit: a column of
Σ w_k δ_k is the same sum whatever the block, and each branch's stack row is computed the same
way whatever the width. A branch's forward can depend on how many branches share the call in
its last bits (a GEMM may pick another kernel), so the budget is part of the result: an
automatic one is decided by rank 0 and recorded in the run's configuration (``run.session``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from hpcars.algorithm.noise import ALIGN

#: the directions' entries [cols] of the kept directions of one update chunk: [b, len(cols)]
Draw = Callable[[slice], torch.Tensor]

BYTES_PER_BRANCH_ENTRY = 12  # its stack row (4), half a direction (2), the forward's copy of a layer (4), slack
BYTES_PER_UPDATE_ENTRY = 12  # a direction's entry in float32 (4) and its float64 copy (8)
BYTES_PER_EXPANDED_ENTRY = 8  # compressed spaces: the model parameters a branch expands to (4), the forward's copy (4)


class Dense:
    """The dense perturbation kind of a searched vector of ``size`` entries, within ``budget`` bytes;
    ``expanded``: the model parameters a branch becomes in a compressed search space (0: the
    searched vector is the model's parameters)."""

    kind = "dense"
    update_dtype = torch.float64  # Σ w_k δ_k, accumulated over chunks of directions

    def __init__(self, size: int, budget: int | None = None, expanded: int = 0) -> None:
        self.noise_size = size
        self.budget = budget
        self.expanded = expanded

    @property
    def update_size(self) -> int:
        """Entries of a step vector: the searched vector's."""
        return self.noise_size

    @property
    def branch_bytes(self) -> int:
        """What one branch of a batched call costs (see the module's text)."""
        return BYTES_PER_BRANCH_ENTRY * max(self.noise_size, 1) + BYTES_PER_EXPANDED_ENTRY * self.expanded

    def width(self, branch_batch: int) -> int:
        """Branches per batched call: ``branch_batch``, or fewer (at least a pair) within the budget."""
        if self.budget is None:
            return branch_batch
        fits = self.budget // self.branch_bytes
        return min(branch_batch, max(2, fits - fits % 2))

    def branches(
        self,
        bases: torch.Tensor,
        owner: torch.Tensor,
        scale: torch.Tensor,
        directions: torch.Tensor,
        which: torch.Tensor,
    ) -> torch.Tensor:
        """[B, P]: row b is bases[owner[b]] + scale[b]·directions[which[b]]; rows with scale 0 are
        exactly their base. One row at a time: no [B, P] temporaries beside the stack."""
        stack = bases[owner]
        row = torch.empty(self.noise_size, dtype=stack.dtype, device=stack.device)
        for b in torch.nonzero(scale).flatten().tolist():
            torch.mul(directions[int(which[b])], scale[b], out=row)
            stack[b] += row
        return stack

    def step(self, weights: torch.Tensor, draw: Draw, total: torch.Tensor) -> None:
        """total += Σ_k weights[k] δ_k (float64 [P]), the directions drawn whole or in column blocks."""
        size = self.noise_size
        block = size
        if self.budget is not None and BYTES_PER_UPDATE_ENTRY * len(weights) * size > self.budget:
            block = max(ALIGN, self.budget // (BYTES_PER_UPDATE_ENTRY * len(weights)) // ALIGN * ALIGN)
        for start in range(0, size, block):
            cols = slice(start, min(start + block, size))
            total[cols] += weights @ draw(cols).to(torch.float64)
