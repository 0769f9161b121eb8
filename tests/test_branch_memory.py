"""Dense branches within ``--branch-memory``: pairs θ ± νδ evaluated beside a θ that is never
written, the update drawn in column blocks — and not a bit of the result changes."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from hpcars.algorithm.noise import ALIGN, NoiseSource
from hpcars.algorithm.perturbation import Dense
from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from hpcars.runtime.devices import branch_memory, node_memory
from hpcars.tasks.plugin import task_from
from hpcars.tasks.problems import SupervisedProblem
from tests.conftest import run_train

CPU = torch.device("cpu")
TINY_GB = 1e-6  # ~1 KB: every call shrinks to one pair


def trainer(gigabytes: float, **options) -> ARSTrainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 3))
    x, y = torch.randn(256, 6), torch.randn(256, 3)
    problem = SupervisedProblem(model=model, train=(x, y), loss="mse", batch_size=16)
    cfg = TrainConfig(directions=5, top_directions=3, branch_batch=8, device="cpu", branch_memory=gigabytes, **options)
    return ARSTrainer(cfg, task_from(problem, cfg), SingleProcess(), [CPU])


def test_pairs_beside_an_untouched_theta_score_what_the_stacked_calls_score():
    small, whole = trainer(TINY_GB), trainer(0.0)
    assert (small.width, whole.width) == (2, 8)
    widths = []
    rewards = small.task.rewards

    def watched(model, params, context, ids):
        theta, weights = small.state.theta.clone(), [p.clone() for p in model.module.parameters()]
        widths.append(len(params))
        out = rewards(model, params, context, ids)
        assert torch.equal(small.state.theta, theta)  # θ, bit for bit, after every pair
        assert all(torch.equal(p, w) for p, w in zip(model.module.parameters(), weights, strict=True))
        return out

    small.task.rewards = watched
    branches = list(range(10))
    for iteration in range(3):
        got = small.score_branches(small.models[0], branches, iteration)
        expected = whole.score_branches(whole.models[0], branches, iteration)
        assert torch.allclose(torch.as_tensor(got), torch.as_tensor(expected), rtol=1e-6, atol=1e-7)
        small.step()
        whole.step()
        assert torch.allclose(small.state.theta, whole.state.theta, rtol=1e-5, atol=1e-6)
    assert set(widths) == {2}


def test_update_in_column_blocks_has_the_bits_of_the_whole():
    size = 3 * ALIGN + 777
    noise = NoiseSource(5)
    weights = torch.tensor([0.5, -1.25, 2.0], dtype=torch.float64)

    def draw(cols):
        return noise.directions(1, 0, [4, 0, 9], size, entries=cols)

    blocks = []
    small = Dense(size, budget=12 * 3 * ALIGN)  # one block of ALIGN columns at a time

    def counted(cols):
        blocks.append(cols)
        return draw(cols)

    blocked, whole = (torch.zeros(size, dtype=torch.float64) for _ in range(2))
    small.step(weights, counted, blocked)
    Dense(size).step(weights, draw, whole)
    assert torch.equal(blocked, whole)
    assert len(blocks) == 4 and all(b.stop - b.start <= ALIGN for b in blocks)


def test_width_follows_the_budget_and_the_automatic_budget_is_the_node_share():
    assert Dense(1000).width(64) == 64
    assert Dense(1000, budget=12 * 1000 * 7).width(64) == 6  # pairs
    assert Dense(1000, budget=1).width(64) == 2  # never below one pair
    assert Dense(1000, budget=12 * 1000 * 100).width(64) == 64
    assert Dense(1000, budget=1).width(1) == 1  # never above --branch-batch
    assert branch_memory(2.0, CPU) == 2 * 2**30
    assert branch_memory(0.0, CPU) == node_memory() // os.cpu_count() // 4  # not the ranks' share: see devices.py
    assert 0 < node_memory() <= 2**50


PAIRS = ["--task", "digits", "--hidden", "16", "--directions", "6", "--top-directions", "4", "--eval-every", "3"]
ANNEALED = ["--population", "2", "--anneal-t0", "1", "--directions", "3", "--eval-every", "3"]


@pytest.mark.parametrize("case", [PAIRS, ANNEALED], ids=["digits", "population-annealing"])
def test_in_place_runs_are_world_size_invariant_and_close_to_the_stacked_run(tmp_path, case):
    shas, scores = {}, {}
    for name, ranks, extra in (
        ("stacked", 1, []),
        ("pairs1", 1, ["--branch-memory", "1e-6"]),
        ("pairs3", 3, ["--branch-memory", "1e-6"]),
    ):
        run = tmp_path / name
        done = run_train([*case, "--iterations", "3", "--run-dir", str(run), *extra], ranks)
        assert done.returncode == 0, done.stderr
        summary = json.loads((run / "summary.json").read_text())
        shas[name], scores[name] = summary["params_sha256"], summary["final"]["score"]
    assert shas["pairs1"] == shas["pairs3"], shas
    assert scores["pairs1"] == pytest.approx(scores["stacked"], rel=1e-4), scores


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_a_negative_or_infinite_budget_is_refused_in_one_line(tmp_path, value):
    done = run_train(["--branch-memory", value, "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "hpcars.train: error: --branch-memory: must be a finite number of GB >= 0 (0 = automatic) "
        f"(got {float(value)!r})"
    )
    assert not (tmp_path / "r").exists()


def test_the_automatic_budget_is_decided_once_and_recorded(tmp_path):
    run = tmp_path / "r"
    assert run_train(["--iterations", "1", "--run-dir", str(run)]).returncode == 0
    recorded = json.loads((run / "config.json").read_text())["branch_memory"]
    assert recorded * 2**30 == branch_memory(0.0, CPU) > 0  # the figure, not 0: a resume elsewhere keeps it


def test_a_compressed_space_counts_the_model_parameters_its_branches_expand_to():
    """The stack is [width, d] in the searched space, but the task gets [width, P]: the budget
    bounds that, not just the d-wide stack (a 1,000 x 1,000 layer in a 64-dimensional subspace
    used to take 244 times a 1 MiB budget)."""
    torch.manual_seed(0)
    model = nn.Linear(300, 300)  # P = 90,300
    problem = SupervisedProblem(model=model, train=(torch.randn(64, 300), torch.randn(64, 300)), loss="mse")
    size = sum(p.numel() for p in model.parameters())
    budget = 10 * (12 * 64 + 8 * size)  # ten branches' worth
    cfg = TrainConfig(
        directions=16,
        branch_batch=32,
        device="cpu",
        search_space="subspace",
        subspace_dim=64,
        branch_memory=budget / 2**30,
        batch_size=16,
    )
    trainer = ARSTrainer(cfg, task_from(problem, cfg), SingleProcess(), [CPU])
    assert trainer.width == 10
    seen = []
    rewards = trainer.task.rewards

    def watched(model, params, context, ids):
        seen.append(tuple(params.shape))
        return rewards(model, params, context, ids)

    trainer.task.rewards = watched
    trainer.step()
    assert seen and all(rows * cols * 4 <= budget for rows, cols in seen) and {cols for _, cols in seen} == {size}
    assert Dense(64, budget=2**20, expanded=10**6).width(64) == 2  # the case: one pair, never 244 MiB
