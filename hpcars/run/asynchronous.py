"""Asynchronous ARS (``--schedule async``): no rank waits for another, and every run replays exactly.

The A3C answer to stragglers (Mnih et al. 2016, arXiv 1602.01783; the seed project's
``ars_multiprocess.py``): each rank loops on its own — and communication stays
scalar-only, because an update is rebuilt from its rewards and seeds, never sent as
a vector.

Every rank repeats:

1. apply, in sequence order, every update rank 0 has sequenced so far
   (``update_log.apply_update``: the same rule on every rank);
2. score one update — N directions, 2N branches, in ``--branch-batch`` calls — at
   its current θ, whose *version* is the number of updates applied; the
   directions, mini-batch and env seeds are keyed by the update's *key*;
3. send one row (``messages.update_schema``) to rank 0.

Rank 0 also **sequences**: between its own updates it takes every row that has
arrived, in arrival order, gives it the next sequence number, applies it and
forwards it to every rank. MPI delivers one sender's messages in order, so every
rank applies the same updates in the same order and holds the same θ at the same
version. A straggler delays only its own updates, which arrive staler.

* **Keys.** In a part of the run with K ranks whose log's largest key is k (−1 when
  empty), rank r's i-th update has key k + 1 + r + K·i: unique, and with one rank
  0, 1, 2, … — the synchronous iterations, so one-rank async *is* synchronous ARS.
* **Staleness** = updates applied between an update's version and its application;
  ``--max-staleness m`` (≥ 0) drops the staler ones (``update_log`` says why drop,
  not down-weight); −1 keeps all. With ``--max-staleness 0`` only updates scored at
  the current θ are applied: on one rank, every update (= synchronous ARS); on K
  ranks, the first update to arrive at each version, the rest dropped.
* **Evaluation and guard** ride on the sequence: every ``--eval-every`` (and
  ``--guard-every``) versions rank 0 puts a marker in the stream; each rank, on
  reaching it (θ at exactly that version), evaluates its share of the evaluation
  units and sends the rows with its θ checksum; rank 0 records the evaluation when
  every share is in — as a metrics row of its own (``seq`` −1) at that version and
  that version's episode count — and a checksum mismatch ends the job (exit 3).
* **Stopping.** Rank 0 announces the stop (the last sequence number) when
  ``--iterations`` updates are applied, the target is reached with
  ``--stop-at-target``, or a stop signal arrives (on another rank it travels as a
  one-row request); every rank applies through that number, confirms, and all
  leave the loop together for the final guard, evaluation and checkpoint.
* **Checkpoints**: rank 0 writes one every ``--checkpoint-every`` versions, with the
  log; resume continues it (any world size); ``--replay RUN_DIR`` re-applies it.
* Refused: ``--population`` > 1 (the operators judge all members at one iteration).
  A rank with several devices scores on its first (one update is one batched job).
* Episodes are counted when their update is sequenced, dropped ones included; the
  updates in flight when the stop is announced are discarded uncounted (at most one
  per rank).
"""

from __future__ import annotations

import time

import numpy as np

from hpcars.errors import DivergenceError
from hpcars.run.engine import IterationRecord
from hpcars.run.update_log import Applied, AsyncRecord, Incoming, apply_update
from hpcars.runtime.comm import partition
from hpcars.runtime.messages import (
    DONE,
    EVAL_MARKER,
    SEQUENCED,
    STOP,
    STOP_REQUEST,
    UPDATE,
    decode_branches,
    decode_share,
    encode_share,
    update_schema,
)

TAG_UP, TAG_DOWN, TAG_EVAL = 31, 32, 33


class AsyncLoop:
    """One rank's asynchronous loop over a training ``Session`` (``hpcars.train``)."""

    def __init__(self, session, stop) -> None:
        self.session, self.stop = session, stop
        self.trainer, self.cfg, self.transport = session.trainer, session.cfg, session.transport
        self.rank, self.size = self.transport.rank, self.transport.size
        self.obs_dim = self.trainer.task.input_dim if self.trainer.obs_stat is not None else 0
        self.branches = 2 * self.cfg.directions
        self.schema = update_schema(self.branches, self.obs_dim)
        log = session.async_log
        self.next_seq = log[-1].seq + 1 if log else 0
        self.next_key = (max(e.key for e in log) + 1 if log else 0) + self.rank
        self.stop_sent = False  # this rank asked rank 0 to stop
        # rank 0 only
        self.stopping: int | None = None  # the signal (or 0) once the stop is announced
        self.done_ranks = 0
        self.received = self.transport.bytes_moved
        self.interrupted = 0  # the stop signal's number, on every rank once the stop has come
        self.evaluations = Evaluations(self)

    # -- messages -----------------------------------------------------------------------
    def _row(self, kind: int, **values) -> np.ndarray:
        columns = {name: np.zeros(w) for name, w in self.schema.blocks}
        columns.update({k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
        columns["kind"] = np.array([kind], dtype=np.float64)
        return self.schema.encode(1, **columns)[0]

    def _field(self, row: np.ndarray, name: str) -> int:
        return int(row[self.schema.column(name)])

    def _to_all(self, row: np.ndarray) -> None:
        for dest in range(1, self.size):
            self.transport.send(dest, row[None], TAG_DOWN)

    def _incoming(self, row: np.ndarray) -> Incoming:
        c = self.schema.decode(row[None])
        obs = c["obs"][0] if self.obs_dim else np.zeros(0)
        return Incoming(
            int(c["source"][0]),
            int(c["version"][0]),
            int(c["key"][0]),
            c["reward"][0].copy(),
            c["samples"][0].copy(),
            obs.copy(),
        )

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        """Loop until the stop; returns the stop signal's number (0: the run's end)."""
        if self.trainer.iteration >= self.cfg.iterations:  # nothing left: not one update past --iterations
            return 0
        while True:
            if self.rank == 0:
                self._sequence()
                if self.stopping is not None:
                    break
            elif self._follow():
                break
            self._score_and_send()
        self._wind_down()
        return self.interrupted

    def _score_and_send(self) -> None:
        if self.stop.signum and not self.stop_sent:
            self.stop_sent = True
            if self.rank == 0:
                self.announce_stop(self.stop.signum)
                return
            self.transport.send(0, self._row(STOP_REQUEST, source=[self.rank], key=[self.stop.signum])[None], TAG_UP)
        t = self.trainer
        rows = t.score_branches(t.models[0], list(range(self.branches)), self.next_key)
        got = decode_branches(t.schema, rows)
        obs = np.zeros(0)
        if got.obs is not None:  # V2: one merged moment, whatever the number of branches
            moments = got.obs.merged()
            obs = np.concatenate([[moments.count], moments.mean, moments.m2])
        row = self._row(
            UPDATE,
            source=[self.rank],
            version=[t.iteration],
            key=[self.next_key],
            reward=got.rewards,
            samples=got.samples,
            obs=obs,
        )
        self.next_key += self.size
        if self.rank == 0:
            self._on_update(row)
        else:
            self.transport.send(0, row[None], TAG_UP)

    # -- every rank but 0 ---------------------------------------------------------------
    def _follow(self) -> bool:
        """Apply what rank 0 sequenced; True once the stop has come."""
        for _, rows in self.transport.receive(TAG_DOWN):
            row = rows.reshape(-1, self.schema.width)[0]
            kind = self._field(row, "kind")
            if kind == SEQUENCED:  # (only rank 0 keeps the log: it writes the checkpoints)
                apply_update(self.trainer, self._incoming(row), self._field(row, "seq"), self.cfg.max_staleness)
            elif kind == EVAL_MARKER:
                self.evaluations.share(self._field(row, "version"))
            elif kind == STOP:
                self.interrupted = self._field(row, "key")  # the signal travels in the key field
                self.transport.send(0, self._row(DONE, source=[self.rank])[None], TAG_UP)
                return True
        return False

    # -- rank 0 -----------------------------------------------------------------------------
    def _sequence(self) -> None:
        for _, rows in self.transport.receive(TAG_UP):
            row = rows.reshape(-1, self.schema.width)[0]
            kind = self._field(row, "kind")
            if kind == UPDATE and self.stopping is None:
                self._on_update(row)
            elif kind == STOP_REQUEST and self.stopping is None:
                self.announce_stop(self._field(row, "key"))  # the signal travels in the key field
            elif kind == DONE:
                self.done_ranks += 1
        self.evaluations.collect()

    def _on_update(self, row: np.ndarray) -> None:
        """Sequence, forward and apply one update; then the markers, stop and checkpoint it triggers."""
        t, cfg, session = self.trainer, self.cfg, self.session
        seq = self.next_seq
        self.next_seq += 1
        row = row.copy()
        row[self.schema.column("kind")], row[self.schema.column("seq")] = SEQUENCED, seq
        self._to_all(row)
        start = time.perf_counter()
        done = apply_update(t, self._incoming(row), seq, cfg.max_staleness)
        session.async_log.append(done.entry)
        self._write_row(done, time.perf_counter() - start)
        if not done.entry.applied:
            return
        version = t.iteration
        if (cfg.eval_every and version % cfg.eval_every == 0) or (cfg.guard_every and version % cfg.guard_every == 0):
            self.evaluations.mark(version)
            self._to_all(self._row(EVAL_MARKER, version=[version]))
            self.evaluations.share(version)
        if version % cfg.checkpoint_every == 0:
            session.save()
        if version >= cfg.iterations:
            self.announce_stop(0)

    def announce_stop(self, signum: int) -> None:
        self.stopping = signum
        self.interrupted = signum
        self._to_all(self._row(STOP, seq=[self.next_seq - 1], key=[signum]))

    def _write_row(self, done: Applied, update_s: float) -> None:
        """Rank 0's metrics row for one sequenced update; ``comm_bytes``: what rank 0 received since the last row."""
        t, entry = self.trainer, done.entry
        comm_bytes, self.received = self.transport.bytes_moved - self.received, self.transport.bytes_moved
        finite = entry.rewards[np.isfinite(entry.rewards)]
        record = IterationRecord(
            iteration=t.iteration,
            reward_mean=float(finite.mean()) if finite.size else float("nan"),
            reward_max=float(finite.max()) if finite.size else float("nan"),
            sigma_r=done.sigma_r,
            skipped=done.skipped if entry.applied else "dropped",
            update_norm=done.update_norm,
            samples=int(entry.samples.sum()),
            total_samples=t.total_samples,
            total_episodes=t.total_episodes,
            elapsed_s=self.session.elapsed(),
            rollout_s=0.0,
            comm_s=0.0,
            update_s=update_s,
            comm_bytes=comm_bytes,
            asynchronous=AsyncRecord(entry.seq, entry.source, entry.version, entry.staleness, int(not entry.applied)),
        )
        self.session.record(record)

    def _wind_down(self) -> None:
        """Rank 0: wait for every rank's confirmation and every evaluation share in flight."""
        if self.rank != 0:
            return
        while self.done_ranks < self.size - 1 or self.evaluations.shares:
            self._sequence()
            time.sleep(0.001)


class Evaluations:
    """The asynchronous evaluations and guard: markers in the stream, each rank's share at the
    marked version, rank 0's record of them (a metrics row at that version, a checksum check)."""

    def __init__(self, loop: AsyncLoop) -> None:
        self.loop = loop
        self.trainer, self.cfg, self.transport = loop.trainer, loop.cfg, loop.transport
        self.rank, self.size = loop.rank, loop.size
        self.shares: dict[int, dict[int, tuple[bytes, np.ndarray]]] = {}  # version -> rank -> share
        # version -> (episodes, samples, parameters, V2 statistics) when the marker was sent
        self.marker_totals: dict[int, tuple] = {}
        self.first_version = self.trainer.iteration
        self.last: dict[str, float] = {}  # rank 0: the latest evaluation recorded

    def mark(self, version: int) -> None:
        """Rank 0: remember the counters of ``version`` (its evaluation row will carry them)."""
        t = self.trainer
        self.marker_totals[version] = (t.total_episodes, t.total_samples, t.named_params(0), t.obs_stat)

    def share(self, version: int) -> None:
        """This rank's share of the evaluation at ``version`` (none on guard-only versions) and its checksum."""
        t = self.trainer
        units = list(partition(t.task.eval_units, self.size, self.rank))
        rows = np.zeros((0, len(t.task.eval_fields)))
        if units and self.cfg.eval_every and version % self.cfg.eval_every == 0:
            rows = t.task.evaluate_units(t.models[0], t.theta, units, version)
        share = encode_share(version, self.rank, bytes.fromhex(t.params_sha256()), rows)
        if self.rank == 0:
            self.add_share(share)
        else:
            self.transport.send(0, share[None], TAG_EVAL)

    def add_share(self, share: np.ndarray) -> None:
        version, rank, digest, rows = decode_share(share, len(self.trainer.task.eval_fields))
        self.shares.setdefault(version, {})[rank] = (digest, rows)

    def collect(self) -> None:
        for _, share in self.transport.receive(TAG_EVAL):
            self.add_share(share.reshape(-1))
        for version in sorted(v for v, got in self.shares.items() if len(got) == self.size):
            got = self.shares.pop(version)
            digests = [got[r][0] for r in range(self.size)]
            bad = [r for r, d in enumerate(digests) if d != digests[0]]
            if bad:
                raise DivergenceError(f"parameters diverged at version {version}: rank(s) {bad} differ from rank 0")
            rows = np.concatenate([got[r][1] for r in range(self.size)])
            if self.cfg.eval_every and version % self.cfg.eval_every == 0:
                self._write(version, self.trainer.task.summarize(rows))
            else:
                self.marker_totals.pop(version)

    def final(self) -> dict[str, float]:
        """Collective, after the loop and the guard: the evaluation of the final θ, recorded like
        every other (a metrics row, ``/best``, the target) — unless the last marker already
        measured this version. Nothing after a stop signal (as in the synchronous mode)."""
        t, version = self.trainer, self.trainer.iteration
        if self.loop.interrupted:
            return {}
        if self.cfg.eval_every and version % self.cfg.eval_every == 0 and version > self.first_version:
            return self.last  # rank 0's; the others never need it
        evaluation = t.evaluate()
        if self.rank == 0:
            self.mark(version)
            self._write(version, evaluation)
        return evaluation

    def _write(self, version: int, evaluation: dict[str, float]) -> None:
        """An evaluation row of its own, at the version (and episode count) it measured."""
        episodes, samples, params, stat = self.marker_totals.pop(version)
        nan = float("nan")
        record = IterationRecord(
            iteration=version,
            reward_mean=nan,
            reward_max=nan,
            sigma_r=nan,
            skipped="",
            update_norm=nan,
            samples=0,
            total_samples=samples,
            total_episodes=episodes,
            elapsed_s=self.loop.session.elapsed(),
            rollout_s=0.0,
            comm_s=0.0,
            update_s=0.0,
            comm_bytes=0,
            eval=evaluation,
            asynchronous=AsyncRecord(-1, -1, version, 0, 0),
        )
        self.last = evaluation
        newly = self.loop.session.record(record, print_always=True, evaluated=(params, stat))
        if newly and self.cfg.stop_at_target and self.loop.stopping is None:
            self.loop.announce_stop(0)
