"""Tabu-like repulsion: keep members out of the basin of the population best.

Tabu search (Glover 1989) forbids returning to recently visited solutions; here the
"tabu" region is a ball around the current population best, so the members other
than the best keep exploring elsewhere instead of collapsing onto it (which is what
truncation and the swarm's social pull push them towards).

Rule: with b the best member (highest fitness this iteration), θ_0 the start of the
run and d_m = ‖θ_m − θ_b‖, a member m ≠ b with 0 < d_m < R is moved radially away
from θ_b by ``strength · (R − d_m)``:

    θ_m ← θ_m + strength · (R − d_m) · (θ_m − θ_b) / d_m

strength = 1 puts it on the sphere of radius R, smaller values part of the way.

The radius is measured by the run: R = radius · ‖θ_b − θ_0‖, a fraction of the way
learning has carried the best member. Members closer to the best than that differ
from it by a small fraction of everything learnt — they crowd its basin — while
members that took their own routes are further apart and left alone. (A radius in
units of the exploration noise, ν√P, never fired: members that are not fresh clones
drift further apart than one perturbation within a few iterations.) A member exactly
at θ_b (a fresh clone, d = 0) has no direction to be pushed in and is left alone;
after its first own step it is pushed along it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RepulsionParams:
    strength: float = 0.0  # 0 = off
    radius: float = 0.1  # a fraction of ‖θ_best − θ_0‖

    @property
    def enabled(self) -> bool:
        return self.strength > 0.0


def tabu_radius(params: RepulsionParams, best: torch.Tensor, origin: torch.Tensor) -> float:
    """R = radius · ‖θ_best − θ_0‖ (float64 tensors)."""
    return params.radius * float((best - origin).norm())


def repel(params: RepulsionParams, theta: torch.Tensor, best: torch.Tensor, radius: float) -> tuple[torch.Tensor, bool]:
    """One member's parameters after repulsion from ``best`` (float64); also whether it moved."""
    away = theta - best
    d = float(away.norm())
    if not 0.0 < d < radius:
        return theta, False
    return theta + (params.strength * (radius - d) / d) * away, True
