"""The population layer on RL and on the annealing judge: common random numbers, world-size
invariance with every operator on, and honest episode counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from hpcars.runtime.messages import decode_branches
from hpcars.tasks import make_task
from tests.conftest import inspect_json, run_train

CPU = [torch.device("cpu")]


def _trainer(**options) -> ARSTrainer:
    cfg = TrainConfig(device="cpu", **options)
    return ARSTrainer(cfg, make_task(cfg), SingleProcess(), CPU)


def _judge_rewards(t: ARSTrainer, iteration: int) -> np.ndarray:
    """The judge pairs [M, J, 2] (old, new) that iteration ``iteration`` would gather."""
    total = t.per_member * t.cfg.population
    rows = t.score_branches(t.models[0], list(range(total)), iteration)
    return t.layout.split(decode_branches(t.schema, rows).rewards)[1]


def _score_alone(t: ARSTrainer, searched: torch.Tensor, iteration: int, episode: int) -> float:
    """The reward of one searched vector on the randomness of ``episode`` in ``iteration``,
    scored by itself in a fixed-width call (the width the trainer uses)."""
    stack = searched[None].expand(t.cfg.branch_batch, -1)
    context = t.task.begin_iteration(iteration, 0, CPU[0])
    return float(t.task.rewards(t.models[0], t.space.to_params(stack), context, [episode]).rewards[0])


JUDGED_TASKS = {
    "regression": dict(task="regression", batch_size=64),
    "hopper-gymnasium": dict(task="Hopper-v5", variant="v2", shift=1.0, eval_episodes=1),
    "hopper-envpool": dict(task="Hopper-v5", variant="v2", shift=1.0, eval_episodes=1, env_backend="envpool"),
}


@pytest.mark.parametrize("case", sorted(JUDGED_TASKS))
def test_annealing_judge_scores_old_and_new_on_the_same_batch_and_seeds(case):
    pytest.importorskip("envpool") if "envpool" in case else None
    t = _trainer(
        population=2, directions=2, anneal_t0=1.0, anneal_pairs=2, branch_batch=8, step_size=0.05, **JUDGED_TASKS[case]
    )
    # iteration 0: nothing pending, the anchor is θ itself: both sides see the same data -> equal
    judge = _judge_rewards(t, 0)
    np.testing.assert_array_equal(judge[:, :, 0], judge[:, :, 1])
    if case != "regression":  # the two pairs are different episodes
        assert np.all(judge[:, 0, 0] != judge[:, 1, 0])
    t.step()
    assert t.state.pending.all() and not torch.equal(t.state.anchor, t.state.theta)
    # iteration 1: old side = the anchor, new side = θ, each exactly as scored alone on the old side's episode
    judge = _judge_rewards(t, 1)
    for m in range(2):
        for k in range(2):
            episode = m * t.per_member + 2 * t.cfg.directions + 2 * k
            assert judge[m, k, 0] == _score_alone(t, t.state.anchor[m], 1, episode)
            assert judge[m, k, 1] == _score_alone(t, t.state.theta[m], 1, episode)
    assert np.all(judge[:, :, 0] != judge[:, :, 1])  # the step changed the score


def test_judge_episodes_are_training_episodes_and_counted():
    t = _trainer(task="Swimmer-v5", population=3, directions=1, anneal_t0=1.0, anneal_pairs=2, eval_episodes=1)
    record = t.step()
    assert t.per_member == 2 * 1 + 2 * 2
    assert record.total_episodes == t.episodes_per_iteration == 3 * 6
    assert record.samples == 3 * 6 * 1000  # Swimmer episodes never end early


POP_RL = [
    "--task",
    "Hopper-v5",
    "--variant",
    "v2",
    "--shift",
    "1",
    "--population",
    "4",
    "--directions",
    "2",
    "--top-directions",
    "1",
    "--branch-batch",
    "4",
    "--generation-every",
    "2",
    "--kill-fraction",
    "0.5",
    "--anneal-t0",
    "0.5",
    "--swarm",
    "true",
    "--repulsion",
    "1",
    "--repulsion-radius",
    "2",  # a ball wider than the way learnt so far: fires within these few iterations
    "--eval-every",
    "2",
    "--eval-episodes",
    "3",
    "--iterations",
    "6",
    "--guard-every",
    "1",
]


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_population_rl_run_is_world_size_invariant_and_counts_every_member(tmp_path, backend):
    """Every operator on, Hopper (uneven episode lengths): 1 and 3 ranks give the same
    parameters, metrics and counts; the summary's episodes are the sum over members."""
    if backend == "envpool":
        pytest.importorskip("envpool")
    runs = {}
    for ranks in (1, 3):
        run_dir = tmp_path / f"n{ranks}"
        done = run_train(POP_RL + ["--env-backend", backend, "--run-dir", str(run_dir)], ranks=ranks, timeout=300)
        assert done.returncode == 0, done.stderr
        runs[ranks] = run_dir
    assert inspect_json(runs[1])["params_sha256"] == inspect_json(runs[3])["params_sha256"]
    metrics = [(d / "metrics.csv").read_text().splitlines() for d in runs.values()]
    column = metrics[0][0].split(",")
    drop = {column.index(c) for c in column if c.endswith("_s") or c == "comm_bytes"}  # clocks and per-rank bytes
    rows = [[[v for i, v in enumerate(line.split(",")) if i not in drop] for line in m[1:]] for m in metrics]
    assert rows[0] == rows[1]
    assert sum(int(line.split(",")[column.index("repelled")]) for line in metrics[0][1:]) > 0  # it fires

    summary = json.loads((runs[1] / "summary.json").read_text())
    count = summary["episode_count"]
    per_iteration = 4 * (2 * 2 + 2 * 1)  # M (2N + 2J)
    assert summary["episodes"] == sum(count["episodes_by_member"]) == 6 * per_iteration
    assert count["judge_episodes"] == 6 * 4 * 2
    assert count["members"] == 4 and 0 <= count["evaluated_member"] < 4
    assert count["evaluations"] == 1 + 3 and count["evaluation_episodes"] == 4 * 3
    last = metrics[0][-1].split(",")
    assert int(last[column.index("total_episodes")]) == summary["episodes"]


def test_episode_budget_stops_before_it_is_exceeded(tmp_path):
    """--max-episodes 50 with 2·(2N + 2J)·M = 12 episodes an iteration: 4 iterations (48), then a final evaluation."""
    args = ["--task", "Swimmer-v5", "--population", "2", "--directions", "2", "--anneal-t0", "1"]
    args += ["--iterations", "100", "--max-episodes", "50", "--eval-episodes", "1", "--run-dir", str(tmp_path)]
    done = run_train(args)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["iterations"] == 4 and summary["episodes"] == 48
    assert summary["final"]["eval_return_mean"] == pytest.approx(summary["final"]["score"])


@pytest.mark.parametrize("rank_by", ["reward", "return"])
def test_truncation_ranks_on_the_reward_or_on_the_return_with_the_shift_given_back(rank_by):
    # Hopper's training reward has 1 per step taken off (--shift 1): a member that falls early can
    # outrank one that stands; --rank-by return ranks on what the evaluation and --target judge
    t = _trainer(
        task="Hopper-v5", variant="v2", shift=1.0, population=4, directions=2, generation_every=1,
        kill_fraction=0.5, rank_by=rank_by, eval_episodes=1, branch_batch=8, step_size=0.05,
    )  # fmt: skip
    differ = False  # the two rankings must part somewhere, or this test could not tell them apart
    for _ in range(3):
        row = t.step().members
        kills = [
            set(np.lexsort((np.arange(4), -r))[2:])
            for r in (row["reward_mean"], row["reward_mean"] + row["samples_mean"])
        ]
        differ |= kills[0] != kills[1]
        ranked = row["reward_mean"] + (row["samples_mean"] if rank_by == "return" else 0.0)
        order = np.lexsort((np.arange(4), -ranked))  # best first, ties to the lower index
        cloned = np.flatnonzero(row["born"] == row["iteration"])
        np.testing.assert_array_equal(cloned, np.sort(order[2:]))
        np.testing.assert_array_equal(row["parent"][cloned], [order[0]] * 2)
        # the member evaluated is the best on the same ranking (or a clone of it: the same parameters)
        assert torch.equal(t.state.theta[t.best], t.state.theta[order[0]])
    assert differ
