"""The ARS update rule, exactly as Algorithm 2 of the paper.

Mania, Guy & Recht, "Simple random search provides a competitive approach to
reinforcement learning", NeurIPS 2018 (arXiv 1803.07055).

Given the rewards of the antithetic pairs ``r+_k = r(θ + νδ_k)`` and
``r-_k = r(θ − νδ_k)`` of the N directions of one iteration:

1. keep exactly ``b`` directions with the largest ``max(r+_k, r-_k)``
   (V1-t / V2-t; ``b = N`` keeps them all, i.e. V1 / V2). Ties are broken by the
   lower direction index, so the choice is deterministic. (The reference code cuts
   at a percentile, which can keep more than ``b`` on ties.)
2. ``σ_R`` = standard deviation (ddof = 0) of the ``2b`` kept rewards.
3. ``θ ← θ + α / (b σ_R) · Σ_kept (r+_k − r-_k) δ_k`` (δ not scaled by ν).

This module turns rewards into the scalar weights ``α (r+ − r−) / (b σ_R)`` of the
kept directions; the caller regenerates those directions and forms the sum. It is
pure NumPy and knows nothing of devices or MPI.

Guard policy: if any reward is not finite, or ``σ_R`` is 0 (all kept rewards equal —
the reference code would divide by zero), the step is *skipped*: the parameters do
not move this iteration and the reason is reported in ``ARSStep.skipped`` so that the
caller logs it (``--on-nonfinite fail`` turns the non-finite case into an error).
Parameters never become NaN through this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIP_NONFINITE = "nonfinite-reward"
SKIP_ZERO_STD = "zero-reward-std"


@dataclass(frozen=True)
class ARSHyper:
    """The paper's hyper-parameters: α, ν, N and b."""

    step_size: float
    noise_std: float
    directions: int
    top_directions: int


@dataclass(frozen=True)
class ARSStep:
    """The update of one iteration: θ += Σ_i weights[i] · δ_{kept[i]}."""

    kept: np.ndarray  # int64 [b], ascending direction indices
    weights: np.ndarray  # float64 [b]
    sigma_r: float
    skipped: str = ""  # "" when the step is applied, else the reason


def select_top(r_plus: np.ndarray, r_minus: np.ndarray, b: int) -> np.ndarray:
    """Indices of the ``b`` directions with the largest max(r+, r−), ascending.

    Tie-break: among equal scores the lower direction index wins.
    """
    score = np.maximum(r_plus, r_minus)
    order = np.lexsort((np.arange(score.size), -score))  # score desc, index asc
    return np.sort(order[:b]).astype(np.int64)


def ars_step(r_plus: np.ndarray, r_minus: np.ndarray, hyper: ARSHyper) -> ARSStep:
    """The ARS step for one iteration's rewards (arrays of length N)."""
    r_plus = np.asarray(r_plus, dtype=np.float64)
    r_minus = np.asarray(r_minus, dtype=np.float64)
    if r_plus.shape != (hyper.directions,) or r_minus.shape != (hyper.directions,):
        raise ValueError(f"expected {hyper.directions} rewards per sign, got {r_plus.shape}, {r_minus.shape}")
    empty = np.zeros(0, dtype=np.int64)
    if not (np.all(np.isfinite(r_plus)) and np.all(np.isfinite(r_minus))):
        return ARSStep(empty, np.zeros(0), float("nan"), SKIP_NONFINITE)
    kept = select_top(r_plus, r_minus, hyper.top_directions)
    sigma_r = float(np.std(np.concatenate((r_plus[kept], r_minus[kept]))))
    if not sigma_r > 0.0:
        return ARSStep(empty, np.zeros(0), sigma_r, SKIP_ZERO_STD)
    scale = hyper.step_size / (hyper.top_directions * sigma_r)
    weights = scale * (r_plus[kept] - r_minus[kept])
    return ARSStep(kept, weights, sigma_r)
