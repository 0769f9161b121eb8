"""RL tasks: learning under MPI, V2 statistics across ranks, shift, presets, bad ids."""

import csv

import h5py
import numpy as np
import pytest
import torch

from hpcars.algorithm.branches import BatchedModel
from hpcars.algorithm.runningstat import RunningStat
from hpcars.cli.options import parse_args
from hpcars.config import ConfigError
from hpcars.tasks.env_backends import EpisodeKey, gym_seed
from hpcars.tasks.envs import MujocoWarnings, make_env
from hpcars.tasks.rl import GymTask
from tests.conftest import HOPPER_V2, checkpoint_file, inspect_json, run_cli, run_train


def test_cartpole_improves_under_two_ranks(tmp_path):
    args = [
        "--task",
        "CartPole-v1",
        "--iterations",
        "15",
        "--directions",
        "8",
        "--step-size",
        "0.05",
        "--noise-std",
        "0.1",
        "--eval-every",
        "5",
        "--eval-episodes",
        "10",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    done = run_cli(args, ranks=2)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").read_text().splitlines()))
    evals = [float(r["eval_return_mean"]) for r in rows if r["eval_return_mean"]]
    assert len(evals) == 3
    initial = float(done.stdout.split("eval_return_mean ")[1].split()[0])
    assert initial < 50 and evals[-1] > 200, (initial, evals)
    assert int(rows[-1]["total_episodes"]) == 15 * 16


def _replay_states(env_id: str, seeds):
    """The observations a zero linear policy is fed, replayed with plain Gymnasium."""
    env = make_env(env_id)
    states = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        while True:
            states.append(np.asarray(obs, dtype=np.float32))
            obs, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
            if terminated or truncated:
                break
    return np.array(states, dtype=np.float64)


def test_merged_branch_moments_equal_one_pass_over_all_states():
    task = GymTask("Hopper-v5", 0, branch_batch=8)
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    key, indices = EpisodeKey(0, 1, 2, 0), [11, 12, 13, 14, 15]
    seeds = [gym_seed(key, i) for i in indices]
    stack = torch.zeros(8, model.spec.size)
    _, steps, moments = task.rollouts(model, stack, key, indices, 0.0, record=True)
    merged = RunningStat.empty(task.input_dim)
    for b in range(len(seeds)):
        merged = merged.merge(RunningStat(moments.count[b], moments.mean[b], moments.m2[b]))
    everything = RunningStat.of(_replay_states("Hopper-v5", seeds))
    assert merged.count == everything.count == steps.sum()
    np.testing.assert_allclose(merged.mean, everything.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged.m2, everything.m2, rtol=1e-7, atol=1e-9)


def test_shift_comes_off_every_training_step():
    task = GymTask("Hopper-v5", 0, branch_batch=4)
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    stack = torch.zeros(4, model.spec.size)
    key = EpisodeKey(0, 1, 0, 0)
    plain, steps, _ = task.rollouts(model, stack, key, [1, 2, 3], 0.0, record=False)
    shifted, steps2, _ = task.rollouts(model, stack, key, [1, 2, 3], 1.0, record=False)
    np.testing.assert_array_equal(steps, steps2)
    np.testing.assert_allclose(shifted, plain - steps)


def test_v2_world_size_invariance_params_and_statistics(tmp_path):
    """Hopper episodes end at different times: uneven work, same result on 1 and 3 ranks."""
    args = HOPPER_V2
    seen = {}
    for ranks in (1, 3):
        run_dir = tmp_path / f"n{ranks}"
        done = run_train(args + ["--run-dir", str(run_dir)], ranks=ranks)
        assert done.returncode == 0, done.stderr
        with h5py.File(checkpoint_file(run_dir)) as f:
            stats = tuple(np.asarray(f["obs_stat"][k]).tobytes() for k in ("count", "mean", "m2"))
        seen[ranks] = (inspect_json(run_dir)["params_sha256"], stats)
    assert seen[1] == seen[3]


def test_presets_and_overrides():
    cfg = parse_args(["--preset", "halfcheetah"])
    assert (cfg.task, cfg.variant, cfg.directions, cfg.top, cfg.step_size, cfg.noise_std) == (
        "HalfCheetah-v5",
        "v2",
        32,
        4,
        0.02,
        0.03,
    )
    assert cfg.target == 3430 and cfg.stop_at_target
    cfg = parse_args(["--preset", "hopper", "--directions", "16", "--stop-at-target", "false"])
    assert (cfg.directions, cfg.top, cfg.shift, cfg.stop_at_target) == (16, 4, 1.0, False)
    with pytest.raises(ConfigError, match="--preset"):
        parse_args(["--preset", "pong"])


def test_unknown_env_id_is_bad_input(tmp_path):
    done = run_train(["--task", "HalfCheetah-v9", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "HalfCheetah-v5" in lines[0]
    assert lines[0].startswith("hpcars.train: error: --task: 'HalfCheetah-v9' is not a registered Gymnasium id")
    assert not (tmp_path / "r").exists()  # refused before the run directory was made


def test_mujoco_warnings_go_to_stderr_not_to_a_log_in_the_working_directory(tmp_path):
    """HalfCheetah-v5's XML makes MuJoCo warn at every env creation; left alone, MuJoCo
    appends that to MUJOCO_LOG.TXT in the working directory."""
    done = run_cli(
        [
            "--task",
            "HalfCheetah-v5",
            "--iterations",
            "1",
            "--directions",
            "2",
            "--eval-episodes",
            "1",
            "--run-dir",
            str(tmp_path / "r"),
        ],
        ranks=2,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert "settotalmass" not in done.stderr


def test_other_mujoco_warnings_print_once(capsys):
    handler = MujocoWarnings()
    for _ in range(3):
        handler("Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable.")
    handler("compiler attribute 'settotalmass' is deprecated and will be removed")
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "MuJoCo warning: Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable. (repeats are not shown)"
    ]


def test_clip_actions_false_passes_raw_actions_and_pays_their_control_cost():
    """MuJoCo clamps the control either way, so the motion is the same; Gymnasium v5
    charges the control cost on the action it was given, so raw actions out of the
    bounds cost more. Within the bounds the two settings are identical."""
    returns = {}
    for clip in (True, False):
        task = GymTask("HalfCheetah-v5", 0, branch_batch=2, clip_actions=clip)
        model = BatchedModel(task.build_model(), torch.device("cpu"))
        weight = torch.from_numpy(np.random.default_rng(1).normal(0, 1, model.spec.size)).float()
        stack = torch.stack([3.0 * weight, 0.01 * weight])  # far out of [-1, 1]; well inside it
        returns[clip], _, _ = task.rollouts(model, stack, EpisodeKey(0, 1, 0, 0), [5, 5], 0.0, record=False)
    assert returns[False][0] < returns[True][0] - 100
    assert returns[False][1] == returns[True][1]
