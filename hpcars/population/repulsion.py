"""Tabu-like repulsion: keep members out of a ball around the population best.

Tabu search (Glover 1989) forbids returning to recently visited solutions; here the
"tabu" region is a ball around the current population best, so the members other
than the best keep exploring elsewhere instead of collapsing onto it (which is what
truncation and the swarm's social pull push them towards).

Rule: with b the best member (highest fitness this iteration) and d_m = ‖θ_m − θ_b‖,
a member m ≠ b with 0 < d_m < R is moved radially away from θ_b by
``strength · (R − d_m)``:

    θ_m ← θ_m + strength · (R − d_m) · (θ_m − θ_b) / d_m

strength = 1 puts it on the sphere of radius R, smaller values part of the way.
The radius is measured in exploration units: R = radius · ν_m · √P, the typical
length of the member's own perturbation νδ (‖δ‖ ≈ √P for P parameters), so the
default radius = 1 means "no closer to the best than one perturbation". A member
exactly at θ_b (a fresh clone, d = 0) has no direction to be pushed in and is left
alone; its own noise separates it from the best within an iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RepulsionParams:
    strength: float = 0.0  # 0 = off
    radius: float = 1.0  # in units of ν√P

    @property
    def enabled(self) -> bool:
        return self.strength > 0.0


def repel(
    params: RepulsionParams, theta: torch.Tensor, best: torch.Tensor, noise_std: float
) -> tuple[torch.Tensor, bool]:
    """One member's parameters after repulsion from ``best`` (float64); also whether it moved."""
    radius = params.radius * noise_std * math.sqrt(theta.numel())
    away = theta - best
    d = float(away.norm())
    if not 0.0 < d < radius:
        return theta, False
    return theta + (params.strength * (radius - d) / d) * away, True
