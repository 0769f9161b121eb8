"""Message schemas: what the ranks exchange, column by column, in one place.

Every message is a float64 array with one row per item (a branch, an evaluation
unit) and named column blocks. ``Schema`` encodes named arrays into rows and
decodes rows back into named arrays, so no caller indexes a row by position and
``hpcars.runtime.comm`` only moves arrays.

The ARS iteration's message (``branch_schema``), one row per branch:

=========  =====  ==================================================================
block      width  meaning
=========  =====  ==================================================================
reward     1      the branch's reward
samples    1      data samples or env steps the branch consumed
obs_count  1      V2 only: how many inputs the branch's model was fed
obs_mean   d      V2 only: their mean (d = the model's input width)
obs_m2     d      V2 only: their sum of squared deviations from that mean
groups     K      --fitness group-zscore only: the branch's reward on each of the
                  iteration's K prompts
=========  =====  ==================================================================

Its size depends on N and d, never on the number of model parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpcars.tasks.base import BranchOutcome, ObsMoments


@dataclass(frozen=True)
class Schema:
    """Named column blocks (name, width) of a float64 message, in column order."""

    blocks: tuple[tuple[str, int], ...]

    @property
    def width(self) -> int:
        return sum(w for _, w in self.blocks)

    def encode(self, rows: int, **columns: np.ndarray) -> np.ndarray:
        """[rows, width] from one array per block: [rows] for width 1, [rows, w] otherwise."""
        if set(columns) != {name for name, _ in self.blocks}:
            raise ValueError(f"message needs blocks {[n for n, _ in self.blocks]}, got {sorted(columns)}")
        out = np.empty((rows, self.width), dtype=np.float64)
        start = 0
        for name, width in self.blocks:
            if width:
                out[:, start : start + width] = np.asarray(columns[name], dtype=np.float64).reshape(rows, width)
            start += width
        return out

    def column(self, name: str) -> int:
        """The column of a width-1 block (to read or set one field of a row in place)."""
        start = 0
        for block, width in self.blocks:
            if block == name:
                if width != 1:
                    raise ValueError(f"block {name} has width {width}, not 1")
                return start
            start += width
        raise KeyError(name)

    def decode(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Block name -> [rows] (width 1) or [rows, w] views of ``rows``."""
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"message rows have shape {rows.shape}, schema width is {self.width}")
        out, start = {}, 0
        for name, width in self.blocks:
            block = rows[:, start : start + width]
            out[name] = block[:, 0] if width == 1 else block
            start += width
        return out


def branch_schema(obs_dim: int, groups: int = 0) -> Schema:
    """The per-branch message; ``obs_dim`` > 0 adds the V2 input moments, ``groups`` > 0 the
    per-prompt rewards."""
    blocks = [("reward", 1), ("samples", 1)]
    if obs_dim:
        blocks += [("obs_count", 1), ("obs_mean", obs_dim), ("obs_m2", obs_dim)]
    if groups:
        blocks += [("groups", groups)]
    return Schema(tuple(blocks))


def encode_branches(schema: Schema, outcome: BranchOutcome) -> np.ndarray:
    """A task's ``BranchOutcome`` as message rows (its moments and per-prompt rewards only if the
    schema has them)."""
    names = {name for name, _ in schema.blocks}
    columns = {"reward": outcome.rewards, "samples": outcome.samples}
    if "obs_count" in names:
        obs = outcome.obs
        assert obs is not None  # a schema with moments is a V2 run's: its tasks report them
        columns.update(obs_count=obs.count, obs_mean=obs.mean, obs_m2=obs.m2)
    if "groups" in names:
        assert outcome.groups is not None  # a schema with groups is a group-zscore run's: its task reports them
        columns.update(groups=outcome.groups)
    return schema.encode(len(outcome.rewards), **columns)


def decode_branches(schema: Schema, rows: np.ndarray) -> BranchOutcome:
    """Message rows back into a ``BranchOutcome`` (obs None without V2 moments, groups None
    without per-prompt rewards)."""
    c = schema.decode(rows)
    obs = ObsMoments(c["obs_count"], c["obs_mean"], c["obs_m2"]) if "obs_count" in c else None
    groups = c["groups"].reshape(len(rows), -1) if "groups" in c else None
    return BranchOutcome(rewards=c["reward"], samples=c["samples"], obs=obs, groups=groups)


#: kinds of the asynchronous mode's messages (the ``kind`` block of ``update_schema``)
UPDATE, STOP_REQUEST, DONE, SEQUENCED, EVAL_MARKER, STOP = range(6)


def update_schema(branches: int, obs_dim: int) -> Schema:
    """The asynchronous mode's message, one row (``hpcars.run.asynchronous``):

    ======  =========================  ==============================================
    block   width                      meaning
    ======  =========================  ==============================================
    kind    1                          UPDATE, STOP_REQUEST, DONE (rank -> 0);
                                       SEQUENCED, EVAL_MARKER, STOP (0 -> every rank)
    seq     1                          the update's place in the order (SEQUENCED);
                                       the last update's (STOP)
    source  1                          the rank that scored it
    version 1                          updates applied to the θ it was scored at; the
                                       version to evaluate (EVAL_MARKER)
    key     1                          its noise / data key; the signal (STOP*)
    reward  2N                         rewards, branch order
    samples 2N                         samples or env steps per branch
    obs     1 + 2d                     V2: count, mean [d], M2 [d] of the inputs all
                                       2N branches saw, merged in branch order
    ======  =========================  ==============================================

    Its size depends on N and d, never on the number of model parameters.
    """
    obs = 1 + 2 * obs_dim if obs_dim else 0
    blocks = [("kind", 1), ("seq", 1), ("source", 1), ("version", 1), ("key", 1)]
    blocks += [("reward", branches), ("samples", branches), ("obs", obs)]
    return Schema(tuple(blocks))


def encode_share(version: int, rank: int, digest: bytes, rows: np.ndarray) -> np.ndarray:
    """An asynchronous evaluation share (rank -> 0): version, rank, the 32 bytes of the
    rank's θ checksum at that version (one per column), then its evaluation rows flattened."""
    return np.concatenate([[version, rank], np.frombuffer(digest, dtype=np.uint8), np.asarray(rows).reshape(-1)])


def decode_share(share: np.ndarray, fields: int) -> tuple[int, int, bytes, np.ndarray]:
    """(version, rank, checksum digest, evaluation rows [units, fields]) of one share."""
    share = share.reshape(-1)
    return int(share[0]), int(share[1]), share[2:34].astype(np.uint8).tobytes(), share[34:].reshape(-1, fields)
