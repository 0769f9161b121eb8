"""Fitness shaping: one member's rewards -> the weights of its directions (``--fitness``).

Every kind returns an ``ars.ARSStep`` — θ += Σ_i weights[i]·δ_{kept[i]} — so the engine, the
population and the update log apply them alike. The 2N branches of a member are antithetic
pairs: branch 2k is θ + νδ_k, branch 2k + 1 is θ − νδ_k.

* ``ars`` (the default): Algorithm 2 of Mania, Guy & Recht 2018 (arXiv 1803.07055), exactly
  ``ars.ars_step``: the b directions with the largest max(r+, r−), scaled by α/(b σ_R).
* ``zscore``: Qiu et al. 2025 (arXiv 2509.24372), "Evolution strategies at scale": each of the
  2N rewards as its z-score across the member's branches, z = (r − mean)/(std + 1e-8), and the
  step (α/2N)·Σ_n z_n ε_n over the population of perturbations ε_n = ±δ_k, i.e. the weight
  α (z+_k − z−_k)/(2N) per direction. No top-b, no 1/σ_R beyond the z-score.
* ``group-zscore``: EGGROLL (Sarkar et al. 2025, arXiv 2511.16652) z-scores each member's
  fitness within the group of members that answered the same prompt — a per-prompt baseline
  much like GRPO's. Here every branch answers every prompt of the iteration, so each prompt's
  column of rewards [2N] is z-scored across the branches, a branch's fitness is the mean of
  its z-scores over the prompts, and the step is ``zscore``'s on those fitnesses. It needs the
  per-prompt rewards (tasks that report them: the language-model tasks).

A non-finite reward skips the step (``ars.SKIP_NONFINITE``) in every kind; so does a member
whose rewards are all equal (``ars.SKIP_ZERO_STD``), which has nothing to climb.
"""

from __future__ import annotations

import numpy as np

from hpcars.algorithm.ars import SKIP_NONFINITE, SKIP_ZERO_STD, ARSHyper, ARSStep, ars_step

FITNESS = ("ars", "zscore", "group-zscore")
EPS = 1e-8  # Qiu et al.'s guard in the z-score's denominator


def _zscores(values: np.ndarray, axis: int = 0) -> np.ndarray:
    return (values - values.mean(axis=axis, keepdims=True)) / (values.std(axis=axis, keepdims=True) + EPS)


def _from_fitness(fitness: np.ndarray, hyper: ARSHyper, spread: float) -> ARSStep:
    """zscore's step from per-branch fitnesses [2N] (branch order)."""
    n = hyper.directions
    if not spread > 0.0:
        return ARSStep(np.zeros(0, dtype=np.int64), np.zeros(0), spread, SKIP_ZERO_STD)
    weights = hyper.step_size * (fitness[0::2] - fitness[1::2]) / (2 * n)
    return ARSStep(np.arange(n, dtype=np.int64), weights, spread)


def shaped_step(kind: str, rewards: np.ndarray, hyper: ARSHyper, groups: np.ndarray | None = None) -> ARSStep:
    """The step of one member from its rewards [2N] (branch order) and, for ``group-zscore``, its
    per-prompt rewards [2N, K]."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if kind == "ars":
        return ars_step(rewards[0::2], rewards[1::2], hyper)
    if not np.all(np.isfinite(rewards)):
        return ARSStep(np.zeros(0, dtype=np.int64), np.zeros(0), float("nan"), SKIP_NONFINITE)
    if kind == "zscore":
        return _from_fitness(_zscores(rewards), hyper, float(rewards.std()))
    if kind == "group-zscore":
        if groups is None:
            raise ValueError("group-zscore needs the per-prompt rewards")
        groups = np.asarray(groups, dtype=np.float64)
        if not np.all(np.isfinite(groups)):
            return ARSStep(np.zeros(0, dtype=np.int64), np.zeros(0), float("nan"), SKIP_NONFINITE)
        spread = float(groups.std(axis=0).max()) if groups.size else 0.0  # 0: no prompt told the branches apart
        return _from_fitness(_zscores(groups, axis=0).mean(axis=1), hyper, spread)
    raise ValueError(f"unknown fitness {kind!r} (known: {', '.join(FITNESS)})")
