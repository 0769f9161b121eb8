"""Simulated-annealing acceptance of worsening ARS steps.

Kirkpatrick, Gelatt & Vecchi, "Optimization by simulated annealing", Science 1983;
the Metropolis rule applied to the steps of a stochastic-gradient-like learner.

A member's step from θ (the anchor) to θ' is judged one iteration later by
``hpcars.population.judge``: J pairs of evaluations score θ and θ' on the same
randomness (the iteration's mini-batch; the same episode seeds), and with f, f'
their mean scores:

* f' ≥ f: the step is kept;
* otherwise the worsening Δ = (f − f') / s, in units of s, the standard deviation of
  the member's 2N branch rewards at θ' (so T does not depend on the task's reward
  scale), is kept with probability exp(−Δ / T_j), and reverted with the rest: the
  member goes back to θ and this iteration's step, estimated around θ', is dropped.

The judge's 2J evaluations per member and iteration are training episodes and are
counted as such. (Judged instead by the fitness of θ measured an iteration earlier,
on other batches or seeds, batch-to-batch noise reads as worsening: BENCHMARKS.md.)

The temperature falls geometrically, T_j = t0 · cooling^j, so worsening moves
become harder to accept as training goes on (the seed project's "difficulty
increasing over epochs"). t0 = 0 turns acceptance off (every step kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnnealingParams:
    t0: float = 0.0  # initial temperature, in reward standard deviations; 0 = off
    cooling: float = 0.99  # T_j = t0 * cooling**j
    pairs: int = 1  # J, judge pairs per member and iteration

    @property
    def enabled(self) -> bool:
        return self.t0 > 0.0


def temperature(params: AnnealingParams, iteration: int) -> float:
    return params.t0 * params.cooling**iteration


def acceptance_probability(worsening: np.ndarray, temp: float) -> np.ndarray:
    """exp(−Δ/T) for Δ > 0, 1 for Δ ≤ 0; a non-finite Δ (a NaN reward) is never accepted."""
    worsening = np.asarray(worsening, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(-np.maximum(worsening, 0.0) / temp) if temp > 0 else (worsening <= 0).astype(np.float64)
    return np.where(np.isfinite(worsening), p, 0.0)


def accept(worsening: np.ndarray, temp: float, u: np.ndarray) -> np.ndarray:
    """Metropolis decisions: keep a step when u < exp(−Δ/T) (always when Δ ≤ 0)."""
    worsening = np.asarray(worsening, dtype=np.float64)
    return (worsening <= 0) | (u < acceptance_probability(worsening, temp))


def reward_scale(rewards: np.ndarray) -> float:
    """s: the standard deviation of a member's rewards, or 1 when it is 0 or undefined."""
    s = float(np.std(rewards)) if np.all(np.isfinite(rewards)) else math.nan
    return s if s > 0 else 1.0
