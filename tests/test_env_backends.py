"""Env backends (``--env-backend``): EnvPool against Gymnasium, seeding, errors."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from hpcars.algorithm.branches import BatchedModel
from hpcars.tasks.env_backends import EpisodeKey
from hpcars.tasks.rl import ENV_STREAM, GymTask
from tests.conftest import HOPPER_V2, checkpoint_file, inspect_json, run_cli, run_train

pytest.importorskip("envpool", reason="the envpool backend needs the envpool extra")


def _returns(backend: str, weight: np.ndarray, episodes: int) -> np.ndarray:
    task = GymTask("Hopper-v5", 0, branch_batch=episodes, env_backend=backend)
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    stack = torch.from_numpy(weight.reshape(-1)).float()[None].repeat(episodes, 1)
    returns, _, _ = task.rollouts(model, stack, EpisodeKey(3, ENV_STREAM, 0, 0), range(episodes), 0.0, False)
    return returns


def test_envpool_and_gymnasium_return_distributions_agree():
    """Same policy, same task, different episodes: a two-sample Kolmogorov-Smirnov test
    does not tell the backends apart, while it does tell this policy from one whose
    weights are 1.5x larger (the test has the power to see a real difference)."""
    weight = np.random.default_rng(0).normal(0.0, 0.3, (3, 11))
    gym = _returns("gymnasium", weight, 80)
    pool = _returns("envpool", weight, 80)
    other = _returns("envpool", 1.5 * weight, 80)
    assert ks_2samp(gym, pool).pvalue > 0.05, (gym.mean(), pool.mean())
    assert ks_2samp(gym, other).pvalue < 0.01, (gym.mean(), other.mean())


def test_envpool_episode_depends_on_its_key_and_index_only():
    """EnvPool fixes seeds when a pool is made; hpcars keeps one pool per (seed, stream,
    member) and resets every env once per iteration. Episode (iteration, index) starts
    alike whether asked alone or beside others, after iterations that ran other
    episodes or none, from a grown pool, or from a fresh process's backend."""
    task = GymTask("Hopper-v5", 0, env_backend="envpool")
    key = EpisodeKey(0, ENV_STREAM, 0, 0)
    first = task.backend.reset(key, [0, 1, 2, 7, 8])
    assert len(np.unique(first[:, 0])) == 5  # distinct initial states
    later = dataclasses.replace(key, iteration=3)
    together = task.backend.reset(later, [2, 3, 4])
    for backend_task in (GymTask("Hopper-v5", 0, env_backend="envpool"), task):
        np.testing.assert_array_equal(backend_task.backend.reset(later, [3])[0], together[1])
    grown = task.backend.reset(dataclasses.replace(key, iteration=4), [30, 31])  # grows the pool
    fresh = GymTask("Hopper-v5", 0, env_backend="envpool").backend
    np.testing.assert_array_equal(fresh.reset(dataclasses.replace(key, iteration=4), [31])[0], grown[1])
    assert not np.array_equal(together[0], first[2])  # another iteration, another episode


def test_envpool_world_size_invariance_and_resume(tmp_path):
    """1 rank, 3 ranks, and 2 iterations on 1 rank resumed for the last 2 on 3 ranks (the
    resumed ranks make fresh pools and replay their resets): the same parameters and V2
    statistics."""
    args = [*HOPPER_V2, "--env-backend", "envpool", "--checkpoint-every", "1"]
    half = [*args[: args.index("--iterations")], "--iterations", "2", *args[args.index("--iterations") + 2 :]]
    runs = {"n1": (args, 1), "n3": (args, 3), "resumed": (half, 1)}
    for name, (argv, ranks) in runs.items():
        assert run_train([*argv, "--run-dir", str(tmp_path / name)], ranks=ranks).returncode == 0
    done = run_train([*args, "--run-dir", str(tmp_path / "resumed"), "--resume", str(tmp_path / "resumed")], ranks=3)
    assert done.returncode == 0, done.stderr
    seen = {}
    for name in runs:
        with h5py.File(checkpoint_file(tmp_path / name)) as f:
            stats = tuple(np.asarray(f["obs_stat"][k]).tobytes() for k in ("count", "mean", "m2"))
        info = inspect_json(tmp_path / name)
        seen[name] = (info["params_sha256"], stats, info["iteration"], info["config"]["env_backend"])
    assert seen["n1"] == seen["n3"] == seen["resumed"]
    assert seen["n1"][2:] == (4, "envpool")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--task", "Taxi-v4"],
            "--env-backend: envpool has no Taxi-v4 (it has Taxi-v3); use --env-backend gymnasium",
        ),
        (
            ["--task", "Hopper-v2"],
            "--env-backend: envpool has no Hopper-v2 (it has Hopper-v3, Hopper-v4, Hopper-v5); "
            "use --env-backend gymnasium",
        ),
        (
            ["--task", "regression"],
            "--env-backend: envpool steps Gymnasium ids; regression is not one",
        ),
    ],
)
def test_envpool_refusals_are_one_line(tmp_path, args, line):
    done = run_cli([*args, "--env-backend", "envpool", "--iterations", "1", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"hpcars.train: error: {line}"]


def test_missing_envpool_is_one_line(tmp_path):
    """Without the package (shadowed here by one that cannot be imported)."""
    shadow = tmp_path / "shadow" / "envpool"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no envpool here')\n")
    done = subprocess.run(
        [sys.executable, "-m", "hpcars.train", "--task", "Hopper-v5", "--env-backend", "envpool"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "shadow"), "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hpcars.train: error: --env-backend: envpool needs EnvPool: pip install 'hpcars[envpool]'"
    ]
