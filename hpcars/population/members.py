"""Each member's iteration, one row per iteration: the ``members`` table of ``RUN_DIR/history.h5``.

The metrics table keeps the population's summary (best member, best and median fitness,
clones); this table keeps what it summarises, per member, so a run can be read back
lineage by lineage — which member climbed, which stalled, what truncation replaced and
by what. One row per iteration, each column an array over the M members (plain h5py:
``f["members/reward_mean"][:]`` is [iterations, M]):

* ``iteration`` — the iteration the row describes (1 = the first), as in ``metrics``;
* ``reward_mean`` — the mean training reward of the member's 2N perturbed branches (RL: the
  return with ``shift`` per step taken off), measured before the iteration's operators:
  the fitness truncation ranks on, except that ``--rank-by return`` ranks on
  ``reward_mean + shift · samples_mean`` and annealing gives a reverted member its judge's score;
* ``samples_mean`` — the mean samples of those branches (RL: episode length in steps),
  so ``reward_mean + shift · samples_mean`` is the unshifted training return;
* ``parent``, ``born``, ``step_size``, ``noise_std`` — the member's search state after
  the iteration's operators (a clone made this iteration already shows its parent).
"""

from __future__ import annotations

import numpy as np

from hpcars.population.state import PopulationState

TABLE = "members"
COLUMNS = ("iteration", "reward_mean", "samples_mean", "parent", "born", "step_size", "noise_std")


def row(iteration: int, rewards: np.ndarray, samples: np.ndarray, state: PopulationState) -> dict[str, np.ndarray]:
    """The row of iteration ``iteration`` from every member's rewards and samples [M, 2N]."""
    finite = np.isfinite(rewards).all(axis=1)
    return {
        "iteration": np.asarray(iteration, dtype=np.int64),
        "reward_mean": np.where(finite, rewards.mean(axis=1), np.nan),
        "samples_mean": np.asarray(samples, dtype=np.float64).mean(axis=1),
        "parent": state.parent.copy(),
        "born": state.born.copy(),
        "step_size": state.step_size.copy(),
        "noise_std": state.noise_std.copy(),
    }


def stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows as the table's columns ([k] or [k, M] each); empty for no rows."""
    if not rows:
        return {}
    return {c: np.stack([r[c] for r in rows]) for c in COLUMNS}
