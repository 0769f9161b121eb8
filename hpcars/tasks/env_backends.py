"""Env backends: who steps a rank's batch of episodes (``--env-backend``).

``GymTask`` runs a batch of episodes in lockstep: one batched policy call per step,
then every episode still running is stepped. A backend is the part that holds the
environments, behind two calls:

* ``reset(key, indices)`` — start episodes ``indices`` of ``key`` (run seed, stream,
  iteration, member); their first observations [n, d]. Episode ``index`` of a key
  starts from the same state whatever rank runs it, alone or beside others — part
  of the world-size invariance. An index may appear more than once in a batch:
  each copy starts from the same state (annealing's judge plays one episode with
  two policies, ``hpcars.population.judge``).
* ``step(actions, rows)`` — step the episodes ``rows`` (positions in the reset
  batch, ascending; ``actions[k]`` for ``rows[k]``): their next observations,
  rewards and done flags (terminated or truncated). A done episode is never
  stepped again.

Backends:

* ``gymnasium`` (default) — one ``gymnasium.make`` env per episode slot, stepped
  one after the other; episode ``i`` of a key resets with the 63-bit seed
  ``gym_seed(key, i)``.
* ``envpool`` — EnvPool's C++ implementation of the same v5 MuJoCo tasks
  (``pip install 'hpcars[envpool]'``), one thread per rank. EnvPool fixes an env's
  seed when its pool is made (env ``i`` of a pool made with seed ``s`` is seeded
  ``s + i``; ``reset(seed=...)`` is ignored) and then draws each reset's initial
  state from that env's own stream, one draw per reset whether or not the env was
  stepped (measured). So each (run seed, stream, member) gets one pool that lives
  for the run, env ``i`` playing episode index ``lo + i`` (seed ``base + lo + i``,
  ``base`` a 31-bit hash of the key without the iteration), and episode ``index`` of
  iteration ``j`` is that env's (j + 1)-th reset: before starting iteration ``j``
  every env of the pool is reset until it has been reset j + 1 times, whichever
  episodes this rank then runs. A reset costs ~7 µs per env; making a pool ~1.4–3.5
  ms per env — which is paid only when a pool must grow to cover new indices, or
  replay its resets (a resumed run, the same episodes asked for twice). An index
  asked for twice in one batch is played by a twin pool made with the same seeds
  (family key + copy number), so both copies start from the same state. The two
  backends give different episodes for the same run seed; their return
  distributions agree (tested, BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hpcars.algorithm.noise import stream_key
from hpcars.config import ENV_BACKENDS
from hpcars.errors import ConfigError
from hpcars.tasks.envs import make_env

ENVPOOL_INDICES = 2**24  # episode indices per (stream, member) an EnvPool seed range covers
ENVPOOL_BASES = 2**31 - ENVPOOL_INDICES  # base + index stays an int32, as EnvPool requires


@dataclass(frozen=True)
class EpisodeKey:
    """A family of episodes: index ``i`` of it is one fixed episode (initial state)."""

    seed: int
    stream: int
    iteration: int
    member: int


def gym_seed(key: EpisodeKey, index: int) -> int:
    """The Gymnasium reset seed of episode ``index`` of ``key``."""
    return stream_key(key.seed ^ key.stream, key.iteration, key.member, index) & (2**63 - 1)


class EnvBackend(Protocol):
    observation_space: Any
    action_space: Any

    def reset(self, key: EpisodeKey, indices: Sequence[int]) -> np.ndarray: ...

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def close(self) -> None: ...


class GymnasiumBackend:
    """One Gymnasium env per episode slot, made on first use and kept."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self._envs = [make_env(env_id)]
        self.observation_space = self._envs[0].observation_space
        self.action_space = self._envs[0].action_space
        self._live: list[Any] = []

    def reset(self, key: EpisodeKey, indices: Sequence[int]) -> np.ndarray:
        while len(self._envs) < len(indices):
            self._envs.append(make_env(self.env_id))
        self._live = self._envs[: len(indices)]
        if not self._live:
            return np.zeros((0, *self.observation_space.shape))
        return np.stack([env.reset(seed=gym_seed(key, i))[0] for env, i in zip(self._live, indices, strict=True)])

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs, self._live = [], []

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.empty((len(rows), *self.observation_space.shape))
        rewards = np.empty(len(rows))
        done = np.empty(len(rows), dtype=bool)
        live = self._live
        for i, row in enumerate(rows.tolist()):  # Python ints: list indexing without NumPy scalars
            obs[i], rewards[i], terminated, truncated, _ = live[row].step(actions[i])
            done[i] = terminated or truncated
        return obs, rewards, done


@dataclass
class _Pool:
    """One EnvPool pool of a (seed, stream, member): env i plays episode index lo + i."""

    pool: Any
    lo: int
    size: int
    resets: int = 0  # how many times every env has been reset
    obs: np.ndarray | None = None  # the observations of the last reset
    used: np.ndarray | None = None  # envs stepped since the last reset


class EnvPoolBackend:
    """EnvPool pools that live for the run, one per (seed, stream, member), on one thread."""

    def __init__(self, env_id: str) -> None:
        self.envpool = _import_envpool(env_id)
        self.env_id = env_id
        probe = self.envpool.make_gymnasium(env_id, num_envs=1, seed=0, num_threads=1)
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        probe.close()
        self._pools: dict[tuple[int, int, int, int], _Pool] = {}
        self._live: list[tuple[_Pool, np.ndarray, np.ndarray]] = []  # (pool, its envs, their batch rows)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.pool.close()
        self._pools, self._live = {}, []

    def _make(self, key: EpisodeKey, lo: int, hi: int) -> _Pool:
        base = stream_key(key.seed ^ key.stream, 0, key.member, 0) % ENVPOOL_BASES
        pool = self.envpool.make_gymnasium(self.env_id, num_envs=hi - lo, seed=base + lo, num_threads=1)
        return _Pool(pool, lo, hi - lo)

    def reset(self, key: EpisodeKey, indices: Sequence[int]) -> np.ndarray:
        wanted = np.asarray(indices, dtype=np.int64)
        obs = np.zeros((wanted.size, *self.observation_space.shape))
        self._live = []
        if wanted.size == 0:
            return obs
        if wanted.min() < 0 or wanted.max() >= ENVPOOL_INDICES:
            raise ValueError(f"EnvPool episode indices must lie in [0, {ENVPOOL_INDICES})")
        # the k-th occurrence of an index in this batch is played by copy k of the pool
        order = np.argsort(wanted, kind="stable")
        first = np.searchsorted(wanted[order], wanted[order])
        copy = np.empty_like(wanted)
        copy[order] = np.arange(wanted.size) - first
        for c in np.unique(copy):
            rows = np.flatnonzero(copy == c)
            pool, envs = self._reset_copy((key.seed, key.stream, key.member, int(c)), key, wanted[rows])
            self._live.append((pool, envs, rows))
            assert pool.obs is not None  # _reset_copy has reset it
            obs[rows] = pool.obs[envs]
        return obs

    def _reset_copy(
        self, family: tuple[int, int, int, int], key: EpisodeKey, wanted: np.ndarray
    ) -> tuple[_Pool, np.ndarray]:
        """The pool of ``family`` reset for ``key.iteration`` and covering ``wanted`` (distinct indices)."""
        pool = self._pools.get(family)
        lo, hi = int(wanted.min()), int(wanted.max()) + 1
        if pool is not None:
            grow = lo < pool.lo or hi > pool.lo + pool.size
            past = pool.resets > key.iteration + 1  # this pool has gone beyond the iteration
            replayed = False
            if pool.resets == key.iteration + 1 and not grow:
                assert pool.used is not None  # reset at least once
                replayed = bool(pool.used[wanted - pool.lo].any())
            if grow or past or replayed:  # a new pool covering both ranges; its resets are replayed below
                lo, hi = min(lo, pool.lo), max(hi, pool.lo + pool.size)
                pool.pool.close()
                pool = None
        if pool is None:
            pool = self._pools[family] = self._make(key, lo, hi)
        while pool.resets <= key.iteration:  # every env's (iteration + 1)-th reset
            pool.obs = pool.pool.reset()[0]
            pool.used = np.zeros(pool.size, dtype=bool)
            pool.resets += 1
        return pool, wanted - pool.lo

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        actions = actions.astype(self.action_space.dtype, copy=False)  # EnvPool converts float32 slowly
        if len(self._live) == 1:  # the usual batch: distinct indices, one pool
            pool, envs, _ = self._live[0]
            return self._step_pool(pool, envs[rows], actions)
        obs = np.empty((len(rows), *self.observation_space.shape))
        rewards = np.empty(len(rows))
        done = np.empty(len(rows), dtype=bool)
        for pool, envs, batch_rows in self._live:
            mine = np.flatnonzero(np.isin(rows, batch_rows))
            if mine.size:
                ids = envs[np.searchsorted(batch_rows, rows[mine])]
                obs[mine], rewards[mine], done[mine] = self._step_pool(pool, ids, actions[mine])
        return obs, rewards, done

    @staticmethod
    def _step_pool(pool: _Pool, ids: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert pool.used is not None  # a live pool has been reset
        pool.used[ids] = True
        ob, reward, terminated, truncated, info = pool.pool.step(actions, ids)
        if np.array_equal(info["env_id"], ids):  # already in row order (the usual case on one thread)
            return ob, reward.astype(np.float64, copy=False), terminated | truncated
        where = np.empty(pool.size, dtype=np.int64)
        where[ids] = np.arange(len(ids))
        order = where[info["env_id"]]  # results come back by env id: put them in row order
        obs = np.empty_like(ob)
        rewards = np.empty(len(ids))
        done = np.empty(len(ids), dtype=bool)
        obs[order], rewards[order], done[order] = ob, reward, terminated | truncated
        return obs, rewards, done


def _import_envpool(env_id: str) -> Any:
    try:
        import envpool
    except ImportError:
        raise ConfigError("--env-backend", "envpool needs EnvPool: pip install 'hpcars[envpool]'") from None
    ids = envpool.list_all_envs()
    if env_id not in ids:
        same = sorted(i for i in ids if i.split("-")[0].lower() == env_id.split("-")[0].lower())
        hint = f" (it has {', '.join(same)})" if same else ""
        raise ConfigError("--env-backend", f"envpool has no {env_id}{hint}; use --env-backend gymnasium")
    return envpool


def make_backend(name: str, env_id: str) -> EnvBackend:
    """The backend ``name`` (one of ``ENV_BACKENDS``) for ``env_id``."""
    assert name in ENV_BACKENDS, name
    if name == "envpool":
        return EnvPoolBackend(env_id)
    return GymnasiumBackend(env_id)
