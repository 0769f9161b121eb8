"""A port of the authors' ARS training loop, without Ray, on Gymnasium v5 envs.

    python bench/ars_reference.py --env HalfCheetah-v5 --seed 0 --n-directions 32 \\
        --deltas-used 4 --step-size 0.02 --delta-std 0.03 --filter MeanStdFilter \\
        --target 3430 --max-iterations 300 [--workers 4] [--eval-rollouts 100] [--smoke]

What it reproduces of modestyachts/ARS ``code/ars.py``, ``policies.py``,
``filter.py`` and ``shared_noise.py`` (Mania, Guy & Recht 2018, arXiv 1803.07055) —
the behaviours that can change episodes to a threshold:

* Noise: one table of 250M float64 normals drawn with ``RandomState(12345)``
  whatever the run seed (cached under ``--noise-cache``); a worker draws a
  direction as a uniform offset into it from its own ``RandomState``.
* Workers: ``--workers`` W, run one after the other in this process (a Ray actor's
  calls run in order and the workers share nothing within an iteration, so the
  result is the same as in parallel). Worker i seeds its env with seed + 7i and its
  offset stream with seed + 7i + 7; it scores ``N // W`` directions, the first
  ``N % W`` workers one more. Each env's reset stream runs on across episodes,
  evaluation episodes included.
* Policy: linear, zero-initialised, ``a = W · filter(obs)``, actions **not
  clipped** (MuJoCo clamps the control; Gymnasium v5 charges the control cost on
  the raw action).
* Filter (``MeanStdFilter``, V2): every training observation is pushed into the
  worker's running statistics; ``(x − mean) / (std + 1e-8)`` where ``mean`` is the
  worker's live running mean (it moves within an iteration) and ``std`` is frozen
  at the last synchronisation, a std below 1e-7 read as infinite. After every
  iteration (and after that iteration's evaluation) the learner merges the
  workers' new statistics in worker order and every worker copies the result.
  Iteration 1 is unnormalised (mean 0, std 1). ``NoFilter`` (V1) passes
  observations through.
* Update: top directions by a percentile cut of max(r+, r−) (ties keep more than
  b); rewards divided by the population std of the kept ones;
  ``w += α · mean over kept of (r+ − r−) · ε`` with ε the unscaled table slice.
* Evaluation: after every 10th iteration, ``--eval-rollouts`` episodes of the
  current policy on the workers' envs, no shift, no filter update. Episodes to the
  threshold count training episodes only (2N per iteration), as in the paper.

Switches that turn one known difference into hpcars' behaviour, to measure which
ones matter: ``--clip-actions`` (clip to the action bounds), ``--frozen-mean``
(the filter's mean frozen at synchronisation, like its std), ``--exact-top`` (keep
exactly b directions).

Not reproduced: Ray, logging, policy files. The authors' code as published no
longer runs on a modern stack (``import parser``, gym's old API, NumPy 2).

Last line: one JSON object.

``--smoke``: 10 iterations (one evaluation) of 50-step episodes, 2 evaluation
episodes and a noise table of 1M entries — seconds, the same code path (for CI;
``bench/fidelity.py --smoke`` passes it on).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hpcars.tasks.envs import make_env

TABLE_SEED, TABLE_SIZE = 12345, 250_000_000
#: ``--smoke``: the same loop at tiny sizes, seconds of run time
SMOKE = dict(max_iterations=10, rollout_length=50, eval_rollouts=2, table_size=1_000_000)


def noise_table(cache: Path, size: int) -> np.ndarray:
    """The shared table, drawn once and memory-mapped from ``cache`` afterwards."""
    path = cache / f"ars-noise-{TABLE_SEED}-{size}.npy"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.random.RandomState(TABLE_SEED).randn(size).astype(np.float64))
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


class RunningStat:
    """Welford statistics as in the reference (sample variance; M² when n = 1)."""

    def __init__(self, dim: int) -> None:
        self.n, self.mean, self.s = 0, np.zeros(dim), np.zeros(dim)

    def push(self, x: np.ndarray) -> None:
        self.n += 1
        if self.n == 1:
            self.mean[...] = x
        else:
            delta = x - self.mean
            self.mean[...] += delta / self.n  # in place: a filter's mean may alias this array
            self.s[...] += delta * delta * (self.n - 1) / self.n

    def merge(self, other: RunningStat) -> None:
        n = self.n + other.n
        if other.n == 0:
            return
        delta = self.mean - other.mean
        self.mean = (self.n * self.mean + other.n * other.mean) / n  # a new array, as in the reference
        self.s = self.s + other.s + delta * delta * self.n * other.n / n
        self.n = n

    def std(self) -> np.ndarray:
        var = self.s / (self.n - 1) if self.n > 1 else np.square(self.mean)
        return np.sqrt(var)

    def copy(self) -> RunningStat:
        out = RunningStat(len(self.mean))
        out.n, out.mean, out.s = self.n, self.mean.copy(), self.s.copy()
        return out


class MeanStdFilter:
    def __init__(self, dim: int, frozen_mean: bool = False) -> None:
        self.rs, self.buffer = RunningStat(dim), RunningStat(dim)
        self.mean, self.std = np.zeros(dim), np.ones(dim)
        self.frozen_mean = frozen_mean

    def __call__(self, x: np.ndarray, update: bool) -> np.ndarray:
        if update:
            self.rs.push(x)
            self.buffer.push(x)
        return (x - self.mean) / (self.std + 1e-8)

    def stats_increment(self) -> None:
        # the reference aliases the live running mean; --frozen-mean takes a copy
        self.mean = self.rs.mean.copy() if self.frozen_mean else self.rs.mean
        self.std = self.rs.std()  # a fresh array: frozen until the next increment
        self.std[self.std < 1e-7] = np.inf

    def sync(self, other: MeanStdFilter) -> None:
        self.rs, self.buffer = other.rs.copy(), other.buffer.copy()
        self.mean, self.std = other.mean.copy(), other.std.copy()


class NoFilter:
    def __call__(self, x: np.ndarray, update: bool) -> np.ndarray:
        return x


class Worker:
    def __init__(self, args: argparse.Namespace, index: int, table: np.ndarray, dim: tuple[int, int]) -> None:
        env_seed = args.seed + 7 * index
        self.env = make_env(args.env)
        self.first_seed: int | None = env_seed  # gym's env.seed(s): the first reset takes it
        self.offsets = np.random.RandomState(env_seed + 7)
        self.table, self.args = table, args
        self.weights = np.zeros(dim)
        v2 = args.filter == "MeanStdFilter"
        self.filter = MeanStdFilter(dim[1], args.frozen_mean) if v2 else NoFilter()
        space = self.env.action_space
        self.bounds = (space.low, space.high) if args.clip_actions else None

    def rollout(self, shift: float, update: bool) -> tuple[float, int]:
        ob, _ = self.env.reset(seed=self.first_seed)
        self.first_seed = None
        total, steps = 0.0, 0
        for _ in range(self.args.rollout_length):
            action = self.weights @ self.filter(np.asarray(ob, dtype=np.float64), update)
            if self.bounds is not None:
                action = np.clip(action, *self.bounds)
            ob, reward, terminated, truncated, _ = self.env.step(action)
            steps += 1
            total += reward - shift
            if terminated or truncated:
                break
        return total, steps

    def train_rollouts(self, w: np.ndarray, count: int) -> tuple[list[int], list[list[float]], int]:
        offsets, rewards, steps = [], [], 0
        for _ in range(count):
            idx = self.offsets.randint(0, len(self.table) - w.size + 1)
            delta = (self.args.delta_std * self.table[idx : idx + w.size]).reshape(w.shape)
            offsets.append(idx)
            self.weights = w + delta
            pos, pos_steps = self.rollout(self.args.shift, update=True)
            self.weights = w - delta
            neg, neg_steps = self.rollout(self.args.shift, update=True)
            rewards.append([pos, neg])
            steps += pos_steps + neg_steps
        return offsets, rewards, steps

    def eval_rollouts(self, w: np.ndarray, count: int) -> list[float]:
        self.weights = w
        return [self.rollout(0.0, update=False)[0] for _ in range(count)]


def shares(total: int, workers: int) -> list[int]:
    """Calls per worker in the reference: N // W each, then one more for the first N % W."""
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def train(args: argparse.Namespace) -> dict:
    table = noise_table(Path(args.noise_cache), args.table_size)
    probe = make_env(args.env)
    dim = (probe.action_space.shape[0], probe.observation_space.shape[0])
    workers = [Worker(args, i, table, dim) for i in range(args.workers)]
    master = MeanStdFilter(dim[1], args.frozen_mean) if args.filter == "MeanStdFilter" else None
    w = np.zeros(dim)
    episodes, timesteps, evals, reached = 0, 0, [], None
    start = time.perf_counter()
    for it in range(args.max_iterations):
        offsets, rewards = [], []
        for worker, count in zip(workers, shares(args.n_directions, args.workers), strict=True):
            o, r, s = worker.train_rollouts(w, count)
            offsets += o
            rewards += r
            timesteps += s
        episodes += 2 * args.n_directions
        offsets, rewards = np.array(offsets), np.array(rewards, dtype=np.float64)
        best, used = rewards.max(axis=1), min(args.deltas_used, args.n_directions)
        if args.exact_top:
            keep = np.sort(np.argsort(-best, kind="stable")[:used])
        else:
            keep = best >= np.percentile(best, 100 * (1 - used / args.n_directions))
        offsets, rewards = offsets[keep], rewards[keep] / np.std(rewards[keep])
        g = sum((rp - rn) * table[i : i + w.size] for (rp, rn), i in zip(rewards, offsets, strict=True))
        w = w + args.step_size * (g / offsets.size).reshape(dim)
        if (it + 1) % 10 == 0:
            returns = []
            for worker, count in zip(workers, shares(args.eval_rollouts, args.workers), strict=True):
                returns += worker.eval_rollouts(w, count)
            evals.append({"iteration": it + 1, "episodes": episodes, "mean": float(np.mean(returns))})
            print(f"iteration {it + 1:5d}  episodes {episodes:6d}  eval {np.mean(returns):9.2f}", flush=True)
            if reached is None and np.mean(returns) >= args.target:
                reached = evals[-1]
                break
        if master is not None:  # the learner merges the workers' new statistics, then everyone copies
            for worker in workers:
                master.rs.merge(worker.filter.buffer)
            master.stats_increment()
            master.buffer = RunningStat(dim[1])
            for worker in workers:
                worker.filter.sync(master)
                worker.filter.stats_increment()
    return {
        "bench": "ars_reference",
        "env": args.env,
        "seed": args.seed,
        "reached": reached,
        "iterations": it + 1,
        "episodes": episodes,
        "timesteps": timesteps,
        "wall_s": round(time.perf_counter() - start, 1),
        "evals": evals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Swimmer-v5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-directions", type=int, default=1)
    parser.add_argument("--deltas-used", type=int, default=1)
    parser.add_argument("--step-size", type=float, default=0.02)
    parser.add_argument("--delta-std", type=float, default=0.01)
    parser.add_argument("--shift", type=float, default=0.0)
    parser.add_argument("--filter", default="NoFilter", choices=("NoFilter", "MeanStdFilter"))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rollout-length", type=int, default=1000)
    parser.add_argument("--eval-rollouts", type=int, default=100)
    parser.add_argument("--target", type=float, default=325.0)
    parser.add_argument("--max-iterations", type=int, default=300)
    parser.add_argument("--clip-actions", action="store_true", help="hpcars' behaviour: clip to the bounds")
    parser.add_argument("--frozen-mean", action="store_true", help="hpcars' behaviour: freeze the filter mean")
    parser.add_argument("--exact-top", action="store_true", help="hpcars' behaviour: keep exactly b directions")
    parser.add_argument("--table-size", type=int, default=TABLE_SIZE)
    parser.add_argument("--noise-cache", default="/tmp/hpcars-bench")
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes, seconds of run time: {SMOKE}")
    if parser.parse_known_args()[0].smoke:
        parser.set_defaults(**SMOKE)
    print(json.dumps(train(parser.parse_args())))


if __name__ == "__main__":
    main()
