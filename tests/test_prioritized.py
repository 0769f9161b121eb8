"""Prioritized mini-batches (``--batch-priority loss``) with the schedules and devices
they meet: refused with ``--schedule async``, device-correct with several devices per
rank. (Bitwise results across world sizes: ``test_plugins.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.config import ConfigError, TrainConfig, validate
from hpcars.tasks.sampling import PriorityParams
from hpcars.tasks.supervised import ProblemTask, digits_problem
from tests.conftest import checkpoint_file, run_train

TINY = [
    "--task",
    "digits",
    "--hidden",
    "8",
    "--directions",
    "4",
    "--branch-batch",
    "2",
    "--batch-size",
    "32",
    "--iterations",
    "3",
    "--eval-every",
    "0",
    "--checkpoint-every",
    "3",
    "--guard-every",
    "1",
]


def _sha(run_dir: Path) -> str:
    return json.loads((run_dir / "summary.json").read_text())["params_sha256"]


def test_prioritized_batches_refused_with_the_async_schedule(tmp_path):
    done = run_train([*TINY, "--batch-priority", "loss", "--schedule", "async", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--batch-priority: loss cannot be used with --schedule async" in lines[0]
    assert "use --schedule static or dynamic" in lines[0]
    assert not (tmp_path / "r").exists()
    # uniform batches and the other schedules stay allowed
    validate(TrainConfig(task="digits", schedule="async"))
    for schedule in ("static", "dynamic"):
        validate(TrainConfig(task="digits", batch_priority="loss", schedule=schedule))
    with pytest.raises(ConfigError):
        validate(TrainConfig(task="digits", batch_priority="loss", schedule="async"))


@pytest.mark.parametrize(
    "priority, schedule", [("loss", "static"), ("loss", "dynamic"), ("uniform", "static")], ids=lambda v: v
)
def test_two_devices_per_rank_match_one_bitwise(tmp_path, priority, schedule):
    shas = {}
    for device in ("cpu", "cpu,cpu"):
        run_dir = tmp_path / device.replace(",", "-")
        args = [*TINY, "--batch-priority", priority, "--schedule", schedule, "--device", device]
        done = run_train([*args, "--run-dir", str(run_dir)])
        assert done.returncode == 0, done.stderr
        shas[device] = _sha(run_dir)
        if priority == "loss":  # the priorities were updated
            with h5py.File(checkpoint_file(run_dir)) as f:
                assert np.isfinite(np.asarray(f["task/priorities"])).sum() > 0
    assert shas["cpu"] == shas["cpu,cpu"]


def test_priority_update_uses_its_own_copy_on_the_parameters_device():
    """Two distinct devices on one rank (``meta`` stands in for a second GPU): each
    scores on its own copy of the one CPU draw, and the priority update after the
    step computes on θ's device, not on the copy the last branch device was given."""

    def fresh() -> ProblemTask:
        return ProblemTask(digits_problem(0, hidden=8), seed=0, batch_size=16, priority=PriorityParams())

    task, alone = fresh(), fresh()
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    flat = ParamSpec.of(model.module).flatten(model.module)
    for j in range(3):
        first = task.begin_iteration(j, 0, torch.device("cpu"))
        second = task.begin_iteration(j, 0, torch.device("meta"))
        assert second.x.device.type == second.y.device.type == second.weights.device.type == "meta"
        assert second.indices.device.type == first.indices.device.type == "cpu"
        assert torch.equal(first.indices, second.indices)  # one draw
        task.after_step(model, flat, j)
        alone.begin_iteration(j, 0, torch.device("cpu"))
        alone.after_step(model, flat, j)
    np.testing.assert_array_equal(task.sampler.priorities, alone.sampler.priorities)
    assert np.isfinite(task.sampler.priorities).sum() > 0
