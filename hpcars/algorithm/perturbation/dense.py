"""Dense perturbations (``--perturbation dense``, the default): δ_k has one normal per parameter.

Branch b is θ + sν δ_k in full — a [B, P] stack, as ARS has always been run — and the
update Σ_k w_k δ_k is one [b] × [b, P] product in float64.
"""

from __future__ import annotations

import torch


class Dense:
    """The dense perturbation kind of a searched vector of ``size`` entries."""

    kind = "dense"

    def __init__(self, size: int) -> None:
        self.noise_size = size

    def branches(
        self, bases: torch.Tensor, owner: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """[B, P]: row b is bases[owner[b]] + scale[b]·noise[b], rows with scale 0 left exactly as their base."""
        stack = bases[owner]
        perturbed = torch.nonzero(scale).flatten()
        stack[perturbed] = stack[perturbed] + scale[perturbed, None] * noise[perturbed]
        return stack

    def step(self, weights: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Σ_k weights[k] noise[k] in float64 [P]."""
        return weights @ noise.to(torch.float64)
