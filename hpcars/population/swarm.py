"""Particle-swarm dynamics around the ARS step.

Kennedy & Eberhart, "Particle swarm optimization", ICNN 1995; inertia weight from
Shi & Eberhart 1998. Here the swarm does not replace ARS: the ARS step Δθ_m plays
the part of the particle's own "gradient" and the swarm adds momentum and the two
pulls. For member m, after its ARS step:

    v_m ← w · v_m + Δθ_m + c₁ r₁ (p_m − θ_m) + c₂ r₂ (g − θ_m)
    θ_m ← θ_m + v_m

* p_m — the member's personal best: the parameters with the highest fitness it
  has measured so far (a fitness measurement is the noisy mean of its 2N branch
  rewards, so a lucky measurement can hold the title for a while);
* g — the population best: the personal best with the highest fitness;
* r₁, r₂ — one agreed uniform in [0, 1) each, per member and iteration (scalars
  rather than per-coordinate draws: the pull keeps the direction of p_m − θ_m);
* defaults w = 0.5, c₁ = c₂ = 0.1: the pulls are small next to the canonical
  1.49 because Δθ already moves the member every iteration; w = 0.5 doubles the
  effective step in a steady direction (1 / (1 − w)).

Velocities start at zero; a clone starts with zero velocity and inherits its
parent's personal best.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SwarmParams:
    enabled: bool = False
    inertia: float = 0.5  # w
    cognitive: float = 0.1  # c₁, pull to the member's personal best
    social: float = 0.1  # c₂, pull to the population best


def velocity(
    params: SwarmParams,
    v: torch.Tensor,
    step: torch.Tensor,
    theta: torch.Tensor,
    personal_best: torch.Tensor,
    global_best: torch.Tensor,
    r1: float,
    r2: float,
) -> torch.Tensor:
    """The new velocity of one member (float64 in, float64 out)."""
    return (
        params.inertia * v
        + step
        + (params.cognitive * r1) * (personal_best - theta)
        + (params.social * r2) * (global_best - theta)
    )
