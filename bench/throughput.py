"""Env steps per second of an hpcars rank against the physics limit, per env backend.

    python bench/throughput.py [--envs HalfCheetah-v5,Hopper-v5,Swimmer-v5,Walker2d-v5]
                               [--episodes 32] [--repeats 7] [--iterations 5] [--smoke]

Part 1, one process, one core, per env: the same linear policy (fixed random
weights), 32 episodes, timed side by side in alternating repetitions (median CPU
time of the process, EnvPool's worker thread included):

* ``limit`` — bare ``mj_step(model, data, nstep=frame_skip)`` on the env's own
  model: the actions the bare Gymnasium loop took, replayed open loop from the
  same initial states, one ``ctrl`` write and one MuJoCo call per env step;
* ``bare gymnasium`` — one env, ``a = clip(W @ obs)``, ``env.step(a)``;
* ``bare envpool`` — one 32-env pool made once and reset for each repetition,
  the same policy in NumPy, finished envs masked out;
* ``hpcars gymnasium`` / ``hpcars envpool`` — a rank's lockstep rollout
  (``GymTask.rollouts``: batched torch policy, V2's observation normaliser and
  statistics on), each call the next iteration's episodes as in training, with each
  backend; ``hpcars envpool V1`` without the normaliser and the statistics.

Rates are reported as fractions of the limit (goal: hpcars ≥ 0.8 on HalfCheetah) and
hpcars as a fraction of the bare loop of its backend (goal: ≥ 0.97): the median over
repetitions of the ratio of two runs made back to back (the order alternates),
and per env step in µs, which says where the time between hpcars and the physics
goes: physics (limit), the backend's own overhead (bare − limit), hpcars' policy
call, bookkeeping and (EnvPool) resetting every env of the pool once per iteration
(hpcars − bare), V2's normaliser and statistics (V2 − V1).

Part 2: whole ARS iterations (N = 32, V2-t, HalfCheetah) under ``mpirun -n 1`` and
``mpirun -n 2``, each backend in turn in the same job; training env steps per second
of the whole job.

Last line: one JSON object.

``--smoke``: Hopper-v5 only, 2 episodes, one repetition; part 2 on Hopper with N = 2,
one timed iteration — seconds, the same code path (for CI); its rates mean little.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import common
import numpy as np
import torch

from hpcars.algorithm.branches import BatchedModel
from hpcars.config import ENV_BACKENDS, TrainConfig
from hpcars.run.initial import initial_model
from hpcars.tasks.env_backends import EpisodeKey
from hpcars.tasks.envs import make_env
from hpcars.tasks.rl import GymTask

#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(envs="Hopper-v5", episodes=2, repeats=1, iterations=1, scaling_env="Hopper-v5", directions=2)


class BareGym:
    """One Gymnasium env, ``clip(W @ obs)``; records the actions for the limit replay."""

    def __init__(self, env_id: str, weight: np.ndarray, seeds: list[int]) -> None:
        self.env, self.weight, self.seeds = make_env(env_id), weight, seeds
        self.starts: list[tuple[np.ndarray, np.ndarray]] = []
        self.actions: list[np.ndarray] = []

    def __call__(self) -> int:
        env, low, high = self.env, self.env.action_space.low, self.env.action_space.high
        data = env.unwrapped.data
        self.starts, self.actions, steps = [], [], 0
        for seed in self.seeds:
            obs, _ = env.reset(seed=seed)
            self.starts.append((data.qpos.copy(), data.qvel.copy()))
            taken = []
            done = False
            while not done:
                action = np.clip(self.weight @ obs, low, high)
                taken.append(action)
                obs, _, terminated, truncated, _ = env.step(action)
                steps += 1
                done = terminated or truncated
            self.actions.append(np.array(taken))
        return steps


def physics_limit(bare: BareGym) -> Callable[[], int]:
    """Replay ``bare``'s episodes open loop: ``ctrl = a; mj_step × frame_skip`` per env step."""
    import mujoco

    env = bare.env.unwrapped
    model, data, frame_skip = env.model, env.data, env.frame_skip

    def replay() -> int:
        steps = 0
        for (qpos, qvel), actions in zip(bare.starts, bare.actions, strict=True):
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = qpos, qvel
            mujoco.mj_forward(model, data)
            for action in actions:
                data.ctrl[:] = action
                mujoco.mj_step(model, data, nstep=frame_skip)
            steps += len(actions)
        return steps

    return replay


def bare_envpool(env_id: str, weight: np.ndarray, episodes: int) -> Callable[[], int]:
    import envpool

    pool = envpool.make_gymnasium(env_id, num_envs=episodes, seed=0, num_threads=1)  # made once, reset each run
    low, high = pool.action_space.low, pool.action_space.high

    def run() -> int:
        obs, _ = pool.reset()
        active, steps = np.arange(episodes), 0
        while active.size:
            ob, _, terminated, truncated, _ = pool.step(np.clip(obs[active] @ weight.T, low, high), active)
            steps += active.size
            running = ~(terminated | truncated)
            active = active[running]
            obs[active] = ob[running]
        return steps

    return run


def hpcars_rollouts(env_id: str, backend: str, weight: np.ndarray, episodes: int, v2: bool) -> Callable[[], int]:
    task = GymTask(env_id, 0, branch_batch=episodes, env_backend=backend)
    # as in training: V2 wraps the policy in the observation normaliser (mean 0, std 1 here)
    model = BatchedModel(initial_model(task, "v2" if v2 else "v1", None)[0], torch.device("cpu"))
    stack = torch.from_numpy(weight.astype(np.float32).reshape(-1))[None].repeat(episodes, 1)
    calls = iter(range(10**9))

    def run() -> int:  # each call the next iteration's episodes, as in training
        key = EpisodeKey(0, 1, next(calls), 0)
        _, steps, _ = task.rollouts(model, stack, key, range(episodes), 0.0, record=v2)
        return int(steps.sum())

    return run


def single_core(env_id: str, episodes: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    probe = make_env(env_id)
    rng = np.random.default_rng(0)
    weight = 0.1 * rng.standard_normal((probe.action_space.shape[0], probe.observation_space.shape[0]))
    bare = BareGym(env_id, weight, list(range(episodes)))
    bare()  # records the actions and initial states the limit replays
    sides = {
        "limit": physics_limit(bare),
        "bare gymnasium": bare,
        "hpcars gymnasium": hpcars_rollouts(env_id, "gymnasium", weight, episodes, v2=True),
        "bare envpool": bare_envpool(env_id, weight, episodes),
        "hpcars envpool": hpcars_rollouts(env_id, "envpool", weight, episodes, v2=True),
        "hpcars envpool V1": hpcars_rollouts(env_id, "envpool", weight, episodes, v2=False),
    }
    for fn in sides.values():
        fn()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(repeats):  # forwards, then backwards: a drift of the machine's speed cancels
        for name in list(sides) if repeat % 2 == 0 else reversed(list(sides)):
            t = time.process_time()
            steps = sides[name]()
            rates[name].append(steps / (time.process_time() - t))
    rate = {name: statistics.median(r) for name, r in rates.items()}
    limit = rate["limit"]
    # hpcars against the bare loop of its backend, repetition by repetition (the two ran back to back)
    of_bare = {
        backend: statistics.median(
            h / b for h, b in zip(rates[f"hpcars {backend}"], rates[f"bare {backend}"], strict=True)
        )
        for backend in ("gymnasium", "envpool")
    }
    return {
        "steps_per_s": {name: round(r) for name, r in rate.items()},
        "of_limit": {name: round(r / limit, 3) for name, r in rate.items()},
        "us_per_step": {name: round(1e6 / r, 2) for name, r in rate.items()},
        "of_bare": {backend: round(r, 3) for backend, r in of_bare.items()},
    }


def worker(env_id: str, backends: list[str], directions: int, iterations: int) -> None:
    """Inside mpirun: time whole ARS iterations with each backend in turn; rank 0 prints a JSON line per backend."""
    from hpcars.run.engine import ARSTrainer
    from hpcars.runtime.comm import make_transport
    from hpcars.tasks import make_task

    torch.set_num_threads(1)
    transport = make_transport()
    for backend in backends:
        top = min(4, directions)
        cfg = TrainConfig(
            task=env_id, variant="v2", directions=directions, top_directions=top, device="cpu", env_backend=backend
        )
        trainer = ARSTrainer(cfg, make_task(cfg), transport, [torch.device("cpu")])
        trainer.step()  # warm-up: env creation
        t = time.perf_counter()
        steps = sum(trainer.step().samples for _ in range(iterations))
        if transport.rank == 0:
            rate = steps / (time.perf_counter() - t)
            print(json.dumps({"backend": backend, "ranks": transport.size, "steps_per_s": rate}), flush=True)


def scaling(env_id: str, directions: int, iterations: int) -> dict[str, dict]:
    """Per backend: training env steps per second under ``mpirun -n 1`` and ``-n 2`` (one job per world size)."""
    mpirun = shutil.which("mpirun", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    rates: dict[str, dict[int, float]] = {backend: {} for backend in ENV_BACKENDS}
    for ranks in (1, 2):
        cmd = [
            mpirun,
            "-n",
            str(ranks),
            sys.executable,
            __file__,
            "--worker",
            "--envs",
            env_id,
            "--directions",
            str(directions),
            "--iterations",
            str(iterations),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
        for line in out.strip().splitlines()[-len(ENV_BACKENDS) :]:
            row = json.loads(line)
            rates[row["backend"]][ranks] = row["steps_per_s"]
    return {
        backend: {
            "steps_per_s_1_rank": round(rate[1]),
            "steps_per_s_2_ranks": round(rate[2]),
            "speedup_2_vs_1": round(rate[2] / rate[1], 3),
        }
        for backend, rate in rates.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5,Swimmer-v5,Walker2d-v5")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (alternating order)")
    parser.add_argument("--iterations", type=int, default=5, help="timed ARS iterations per world size")
    parser.add_argument("--scaling-env", default="HalfCheetah-v5", help="part 2's env")
    parser.add_argument("--directions", type=int, default=32, help="part 2's N (b = min(4, N))")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = common.parse(parser, SMOKE)
    if args.worker:
        worker(args.envs, list(ENV_BACKENDS), args.directions, args.iterations)
        return
    result: dict = {"bench": "throughput", "episodes": args.episodes, "single_core": {}, "scaling": {}}
    for env_id in args.envs.split(","):
        one = single_core(env_id, args.episodes, args.repeats)
        result["single_core"][env_id] = one
        print(f"{env_id}: steps/s per core (fraction of the mj_step limit; µs per step)")
        for name, rate in one["steps_per_s"].items():
            print(f"  {name:18s} {rate:8d}  ({one['of_limit'][name]:.3f}; {one['us_per_step'][name]:6.2f} µs)")
        for backend, ratio in one["of_bare"].items():
            print(f"  hpcars / bare {backend}: {ratio:.3f} (median over repetitions run back to back)")
    result["scaling"] = scaling(args.scaling_env, args.directions, args.iterations)
    for backend, r in result["scaling"].items():
        print(
            f"ARS iterations, {args.scaling_env}, {backend}: 1 rank {r['steps_per_s_1_rank']} steps/s, "
            f"2 ranks {r['steps_per_s_2_ranks']} steps/s, {r['speedup_2_vs_1']}x"
        )
    common.emit(result)


if __name__ == "__main__":
    main()
