"""The asynchronous mode's update log: what was applied, in which order — and its replay.

An asynchronous update is a pure function of scalars and seeds: the 2N rewards of
one set of N directions, scored at some version of θ, and the update's *key*, from
which the directions (and the mini-batch or env seeds they were scored on) are
regenerated. Applying the sequence of updates to θ₀ in order therefore rebuilds θ
exactly, on any world size, without scoring anything: ``replay``.

One ``LogEntry`` per sequenced update: ``seq`` (its place in the order), ``source``
(the rank that scored it), ``version`` (how many updates had been applied to the θ
it was scored at), ``key``, ``applied`` (False: dropped as too stale), ``staleness``
(updates applied between its version and its application), its rewards and samples
[2N], and (V2) the input moments all its branches saw, merged in branch order into one
(count, mean [d], M2 [d]) — what the update adds to the statistics, as in the synchronous
mode. Logs written before checkpoint format 5 hold each branch's moments [2N, 1 + 2d]
instead; they are replayed the way they were applied, branch by branch.
``apply_update`` is the one rule every rank — and the replay — uses:

* staleness s = (updates applied so far) − version; with ``--max-staleness m`` ≥ 0 an
  update with s > m is **dropped**, not down-weighted: a stale estimate points from
  a θ the run has left, and scaling it down only shrinks the error while changing
  the effective step size in a way that depends on timing;
* otherwise the step of its rewards (``algorithm.update``: the one rule of every mode;
  a skipped step moves nothing) is added in float64, the V2 statistics absorb its
  moments, and the version advances by one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hpcars.algorithm import update
from hpcars.algorithm.runningstat import RunningStat


@dataclass(frozen=True)
class LogEntry:
    seq: int
    source: int
    version: int
    key: int
    applied: bool
    staleness: int
    rewards: np.ndarray  # [2N] float64, branch order (+, − per direction)
    samples: np.ndarray  # [2N]
    obs: np.ndarray  # [1 + 2d] the update's merged (count, mean, M2); [0] without V2


@dataclass(frozen=True)
class Incoming:
    """An update as scored and sent, before it is sequenced."""

    source: int
    version: int
    key: int
    rewards: np.ndarray
    samples: np.ndarray
    obs: np.ndarray


@dataclass(frozen=True)
class Applied:
    """What applying one update did (besides its log entry): for the metrics row."""

    entry: LogEntry
    sigma_r: float = float("nan")
    skipped: str = ""
    update_norm: float = 0.0


@dataclass(frozen=True)
class AsyncRecord:
    """The asynchronous columns of a metrics row: one row per sequenced update, and one per
    evaluation (``seq`` = ``source`` = −1, ``evaluated_version`` = the version it measured)."""

    seq: int
    source: int
    evaluated_version: int  # the version of θ the update was scored at (or the evaluation measured)
    staleness: int
    dropped: int  # 1 when --max-staleness dropped it

    def columns(self) -> dict[str, float]:
        return dataclasses.asdict(self)


ASYNC_COLUMNS = tuple(f.name for f in dataclasses.fields(AsyncRecord))


def apply_update(trainer, incoming: Incoming, seq: int, max_staleness: int) -> Applied:
    """Apply (or drop) one update to ``trainer``'s single member.

    Every rank calls this with the same updates in the same order, and so does
    ``replay``. The trainer's ``iteration`` is the version (updates applied)."""
    staleness = trainer.iteration - incoming.version
    applied = max_staleness < 0 or staleness <= max_staleness
    entry = LogEntry(
        seq,
        incoming.source,
        incoming.version,
        incoming.key,
        applied,
        staleness,
        incoming.rewards,
        incoming.samples,
        incoming.obs,
    )
    trainer.total_samples += int(incoming.samples.sum())
    trainer.total_episodes += len(incoming.rewards) * trainer.task.episodes_per_branch
    if not applied:
        return Applied(entry)
    state, r = trainer.state, incoming.rewards
    where = f"update {seq} (key {incoming.key})"
    step = update.member_step(trainer.rule, r, float(state.step_size[0]), float(state.noise_std[0]), where=where)
    if step.skipped:
        trainer.skipped_steps += 1
    delta = trainer.step_vector(0, step, incoming.key)
    update.apply(state.theta[0], delta)
    state.fitness[0] = float(r.mean()) if np.isfinite(r).all() else np.nan
    if trainer.obs_stat is not None:
        _absorb(trainer, incoming.obs)
    after_step = getattr(trainer.task, "after_step", None)
    if after_step is not None:
        after_step(trainer.models[0], trainer.theta, incoming.key)
    trainer.iteration += 1
    return Applied(entry, step.sigma_r, step.skipped, float(delta.norm()))


def _absorb(trainer, obs: np.ndarray) -> None:
    """Merge an update's logged V2 moments into the trainer's statistics."""
    d = (obs.shape[-1] - 1) // 2
    if obs.ndim == 2:  # a log from before format 5: each branch's moments, merged one by one as then
        stat = trainer.obs_stat
        for row in obs:
            stat = stat.merge(RunningStat(float(row[0]), row[1 : 1 + d], row[1 + d :]))
        trainer.set_obs_stat(stat)
        return
    trainer.absorb_moments(RunningStat(float(obs[0]), obs[1 : 1 + d], obs[1 + d :]))


def log_arrays(entries: list[LogEntry]) -> dict[str, np.ndarray]:
    """The log as named arrays (the checkpoint's ``/async_log`` group)."""
    if not entries:
        return {}
    return {
        "seq": np.array([e.seq for e in entries], dtype=np.int64),
        "source": np.array([e.source for e in entries], dtype=np.int64),
        "version": np.array([e.version for e in entries], dtype=np.int64),
        "key": np.array([e.key for e in entries], dtype=np.int64),
        "applied": np.array([e.applied for e in entries], dtype=bool),
        "staleness": np.array([e.staleness for e in entries], dtype=np.int64),
        "rewards": np.stack([e.rewards for e in entries]),
        "samples": np.stack([e.samples for e in entries]),
        "obs": np.stack([e.obs for e in entries]),
    }


def log_entries(arrays: dict[str, np.ndarray]) -> list[LogEntry]:
    if not arrays:
        return []
    return [
        LogEntry(
            int(arrays["seq"][i]),
            int(arrays["source"][i]),
            int(arrays["version"][i]),
            int(arrays["key"][i]),
            bool(arrays["applied"][i]),
            int(arrays["staleness"][i]),
            np.asarray(arrays["rewards"][i]),
            np.asarray(arrays["samples"][i]),
            np.asarray(arrays["obs"][i]),
        )
        for i in range(len(arrays["seq"]))
    ]


def replay(trainer, entries: list[LogEntry], max_staleness: int) -> None:
    """Re-apply a log to a fresh trainer (θ₀, no updates applied): the run's θ, exactly."""
    for e in entries:
        again = apply_update(
            trainer, Incoming(e.source, e.version, e.key, e.rewards, e.samples, e.obs), e.seq, max_staleness
        )
        if again.entry.applied != e.applied:
            raise ValueError(f"replay diverged from the log at update {e.seq}: applied {again.entry.applied}")
