"""Env backends: who steps a rank's batch of episodes (``--env-backend``).

``GymTask`` runs a batch of episodes in lockstep: one batched policy call per step,
then every episode still running is stepped. A backend is the part that holds the
environments, behind three calls:

* ``episode_seeds(seed, stream, iteration, member, indices)`` — the seed of each
  episode. It is a function of (run seed, stream, iteration, member, index) only,
  whatever rank runs the episode: part of the world-size invariance.
* ``reset(seeds)`` — start one episode per seed; their first observations [n, d].
* ``step(actions, rows)`` — step the episodes ``rows`` (positions in the reset
  batch, ascending; ``actions[k]`` for ``rows[k]``): their next observations,
  rewards and done flags (terminated or truncated). A done episode is never
  stepped again.

Backends:

* ``gymnasium`` (default) — one ``gymnasium.make`` env per episode slot, stepped
  one after the other; seeds are 63-bit hashes passed to ``reset(seed=...)``.
* ``envpool`` — EnvPool's C++ implementation of the same v5 MuJoCo tasks
  (``pip install 'hpcars[envpool]'``), one thread per rank. EnvPool fixes an env's
  seed when the pool is made (env ``i`` of a pool made with seed ``s`` starts from
  seed ``s + i``; ``reset(seed=...)`` is ignored), so episode seeds here are
  consecutive, ``base + index`` with a 31-bit ``base`` hashed from (seed, stream,
  iteration, member), and ``reset`` makes one pool per run of consecutive seeds
  (32 HalfCheetah envs: ~50 ms, against seconds of stepping). The two backends
  give different episodes for the same run seed; their return distributions agree
  (tested, BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from hpcars.config import ENV_BACKENDS, ConfigError
from hpcars.envs import make_env
from hpcars.noise import stream_key

ENVPOOL_INDICES = 2**24  # episode indices per (iteration, member) an EnvPool seed range covers
ENVPOOL_BASES = 2**31 - ENVPOOL_INDICES  # base + index stays an int32, as EnvPool requires


class EnvBackend(Protocol):
    observation_space: Any
    action_space: Any

    def episode_seeds(
        self, seed: int, stream: int, iteration: int, member: int, indices: Sequence[int]
    ) -> list[int]: ...

    def reset(self, seeds: Sequence[int]) -> np.ndarray: ...

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class GymnasiumBackend:
    """One Gymnasium env per episode slot, made on first use and kept."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id
        self._envs = [make_env(env_id)]
        self.observation_space = self._envs[0].observation_space
        self.action_space = self._envs[0].action_space
        self._live: list[Any] = []

    def episode_seeds(self, seed: int, stream: int, iteration: int, member: int, indices: Sequence[int]) -> list[int]:
        return [stream_key(seed ^ stream, iteration, member, i) & (2**63 - 1) for i in indices]

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        while len(self._envs) < len(seeds):
            self._envs.append(make_env(self.env_id))
        self._live = self._envs[: len(seeds)]
        return np.stack([env.reset(seed=int(s))[0] for env, s in zip(self._live, seeds, strict=True)])

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, done = [], [], []
        for action, row in zip(actions, rows, strict=True):
            ob, reward, terminated, truncated, _ = self._live[row].step(action)
            obs.append(ob)
            rewards.append(reward)
            done.append(terminated or truncated)
        return np.stack(obs), np.array(rewards, dtype=np.float64), np.array(done, dtype=bool)


class EnvPoolBackend:
    """EnvPool pools, one per run of consecutive seeds, stepped on one thread."""

    def __init__(self, env_id: str) -> None:
        self.envpool = _import_envpool(env_id)
        self.env_id = env_id
        probe = self._pool(0, 1)
        self.observation_space = probe.observation_space
        self.action_space = probe.action_space
        probe.close()
        self._pools: list[tuple[int, int, Any]] = []  # (first row, rows, pool)

    def _pool(self, seed: int, n: int) -> Any:
        return self.envpool.make_gymnasium(self.env_id, num_envs=n, seed=seed, num_threads=1)

    def episode_seeds(self, seed: int, stream: int, iteration: int, member: int, indices: Sequence[int]) -> list[int]:
        base = stream_key(seed ^ stream, iteration, member, 0) % ENVPOOL_BASES
        if any(not 0 <= i < ENVPOOL_INDICES for i in indices):
            raise ValueError(f"EnvPool episode indices must lie in [0, {ENVPOOL_INDICES})")
        return [base + int(i) for i in indices]

    def reset(self, seeds: Sequence[int]) -> np.ndarray:
        for _, _, pool in self._pools:
            pool.close()
        self._pools, obs = [], []
        start = 0
        while start < len(seeds):  # split into runs of consecutive seeds: one pool each
            end = start + 1
            while end < len(seeds) and seeds[end] == seeds[end - 1] + 1:
                end += 1
            pool = self._pool(int(seeds[start]), end - start)
            obs.append(pool.reset()[0])
            self._pools.append((start, end - start, pool))
            start = end
        return np.concatenate(obs)

    def step(self, actions: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        obs = np.empty((len(rows), *self.observation_space.shape))
        rewards = np.empty(len(rows))
        done = np.empty(len(rows), dtype=bool)
        for first, count, pool in self._pools:
            mine = np.flatnonzero((rows >= first) & (rows < first + count))
            if mine.size == 0:
                continue
            sent = rows[mine] - first  # ascending
            ob, reward, terminated, truncated, info = pool.step(actions[mine], sent)
            back = mine[np.searchsorted(sent, info["env_id"])]  # match each result to its row by env id
            obs[back], rewards[back], done[back] = ob, reward, terminated | truncated
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
