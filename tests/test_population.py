"""The population layer: operators against their definitions, and the engine with them on."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpcars.algorithm.ars import ARSStep
from hpcars.config import TrainConfig
from hpcars.population import agreed
from hpcars.population.annealing import AnnealingParams, acceptance_probability
from hpcars.population.layer import Population, PopulationParams
from hpcars.population.repulsion import RepulsionParams, repel, tabu_radius
from hpcars.population.state import PopulationState
from hpcars.population.swarm import SwarmParams
from hpcars.population.truncation import TruncationParams, killed, plan, rank
from hpcars.run.engine import ARSTrainer
from hpcars.run.progress import population_line
from hpcars.runtime.comm import SingleProcess
from tests.conftest import checkpoint_file, inspect_json, run_cli, run_train, train_in_process
from tests.tasks_for_tests import Quadratic

CPU = [torch.device("cpu")]


def trainer(**options) -> ARSTrainer:
    cfg = TrainConfig(device="cpu", **options)
    return ARSTrainer(cfg, Quadratic(size=6), SingleProcess(), CPU)


# -- truncation ------------------------------------------------------------------------------
@pytest.mark.parametrize("members, fraction", [(10, 0.5), (10, 0.3), (7, 0.5), (64, 0.25), (5, 0.9)])
@pytest.mark.parametrize("clone_from", ["best", "top"])
def test_truncation_replaces_exactly_the_worst_fraction(members, fraction, clone_from):
    rng = np.random.default_rng(members)
    fitness = rng.normal(size=members)
    fitness[rng.integers(members)] = np.nan  # a failed member ranks last
    u = rng.random((members, 3))
    gen = plan(fitness, TruncationParams(1, fraction, clone_from), u)
    n_kill = min(math.floor(fraction * members), members - 1)
    assert len(gen.children) == n_kill == killed(members, fraction)
    order = sorted(range(members), key=lambda m: (not np.isfinite(fitness[m]), -np.nan_to_num(fitness[m])))
    assert sorted(gen.children.tolist()) == sorted(order[members - n_kill :])  # exactly the worst
    best = int(np.nanargmax(fitness))
    assert best not in gen.children
    survivors = set(range(members)) - set(gen.children.tolist())
    assert set(gen.parents.tolist()) <= survivors
    if clone_from == "best":
        assert set(gen.parents.tolist()) == {best}


def test_rank_breaks_ties_by_index_and_puts_nan_last():
    assert rank(np.array([1.0, np.nan, 3.0, 3.0, -np.inf])).tolist() == [2, 3, 0, 1, 4]


def test_truncation_in_the_engine_copies_parents_and_keeps_the_best():
    options = dict(population=8, directions=3, kill_fraction=0.5, clone_from="top")
    t = trainer(generation_every=2, **options)
    untouched = trainer(**options)  # the same run without truncation: the state just before it
    for _ in range(2):  # iteration 2 ends a generation
        t.step()
        untouched.step()
    fitness, theta = untouched.state.fitness, untouched.state.theta
    lineage = t.state.lineage
    assert lineage.shape == (4, 3) and set(lineage[:, 0]) == {2}
    children, parents = lineage[:, 1], lineage[:, 2]
    assert sorted(children.tolist()) == sorted(rank(fitness)[4:].tolist())  # exactly the 4 worst
    assert int(np.argmax(fitness)) not in children  # the best survives
    for m in range(8):
        if m in children:
            parent = parents[children.tolist().index(m)]
            assert parent not in children
            assert torch.equal(t.state.theta[m], theta[parent]) and t.state.parent[m] == parent
            assert t.state.born[m] == 2
        else:  # survivors are untouched
            assert torch.equal(t.state.theta[m], theta[m]) and t.state.parent[m] == -1


def test_pbt_perturbation_multiplies_clone_hyperparameters():
    """Each clone's α and ν are its parent's times 0.8 or 1.2, the choice made by the agreed
    uniforms of the truncation stream (row = child; column 1 for α, 2 for ν; < 0.5 -> 0.8)."""
    options = dict(population=6, directions=2, generation_every=1, pbt_perturb=True, step_size=0.02, noise_std=0.03)

    def factor(x: float) -> float:
        return 0.8 if x < 0.5 else 1.2

    drawn_alpha, drawn_nu = set(), set()
    for seed in (1, 2, 3):
        t = trainer(seed=seed, **options)
        t.step()
        children = t.state.lineage[:, 1]
        assert len(children) == 3 and set(t.state.lineage[:, 2]) <= set(range(6)) - set(children)
        u = agreed.member_uniforms(seed, agreed.TRUNCATION, 0, 6, 3)  # iteration 0, M = 6
        for c in children:
            assert t.state.step_size[c] == 0.02 * factor(u[c, 1])
            assert t.state.noise_std[c] == 0.03 * factor(u[c, 2])
        drawn_alpha |= {factor(u[c, 1]) for c in children}
        drawn_nu |= {factor(u[c, 2]) for c in children}
        others = [m for m in range(6) if m not in children]
        assert np.all(t.state.step_size[others] == 0.02) and np.all(t.state.noise_std[others] == 0.03)
    # these seeds draw both factors for α and both for ν, so a rule stuck on one of them fails here
    assert drawn_alpha == drawn_nu == {0.8, 1.2}


# -- simulated annealing ---------------------------------------------------------------------------
def _annealing_population(members: int, t0: float, seed: int = 0) -> Population:
    params = PopulationParams(members, TruncationParams(), AnnealingParams(t0, 1.0), SwarmParams(), RepulsionParams())
    state = PopulationState.start(torch.zeros(3), members, 0.1, 0.1, annealing=True, swarm=False)
    return Population(params, seed, state, torch.zeros(3))


def _rewards(mean: float, members: int) -> np.ndarray:
    """Rewards of 2N = 4 branches with the given mean and standard deviation 1."""
    return np.tile(mean + np.array([1.0, -1.0, 1.0, -1.0]), (members, 1))


@pytest.mark.parametrize("worsening, temp", [(0.5, 1.0), (1.0, 1.0), (2.0, 1.0), (1.0, 0.25), (-1.0, 1.0)])
def test_annealing_acceptance_rate_matches_metropolis(worsening, temp):
    """A controlled objective: the judge finds every member's step worse by exactly Δ (in reward std units)."""
    members = 4000
    pop = _annealing_population(members, temp, seed=int(1000 * worsening + 10 * temp))
    step = ARSStep(np.array([0]), np.array([1.0]), 1.0)
    moved = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    nothing_pending = np.zeros((members, 1, 2))
    pop.advance(0, _rewards(0.0, members), [step] * members, lambda m, s: moved, nothing_pending)
    assert torch.equal(pop.state.theta, moved.float().expand(members, 3))
    judge = np.tile([[[0.0, -worsening]]], (members, 1, 1))  # old side 0, new side worse by Δ
    record = pop.advance(1, _rewards(0.0, members), [step] * members, lambda m, s: moved, judge)
    expected = float(acceptance_probability(np.array([worsening]), temp)[0])
    rate = record.sa_accepted / record.sa_judged
    assert record.sa_judged == members
    assert abs(rate - expected) <= 4 * math.sqrt(expected * (1 - expected) / members) + 1e-12, (rate, expected)
    if worsening > 0:
        assert math.isclose(expected, math.exp(-worsening / temp))
    # rejected members went back to where they were before the step (0) and took no new step
    rejected = pop.state.rejected.astype(bool)
    assert rejected.sum() == members - record.sa_accepted
    assert torch.all(pop.state.theta[rejected] == 0)
    assert torch.all(pop.state.theta[~rejected] == 2 * moved.float())


def test_agreed_uniforms_are_uniform_and_reproducible():
    u = agreed.member_uniforms(7, agreed.ANNEALING, 3, 2000, 2)
    assert np.array_equal(u, agreed.member_uniforms(7, agreed.ANNEALING, 3, 2000, 2))
    assert u.min() >= 0 and u.max() < 1
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 400) < 4 * math.sqrt(400))


def test_temperature_falls_and_is_logged():
    t = trainer(population=2, directions=2, anneal_t0=2.0, anneal_cooling=0.5)
    temps = [t.step().population.temperature for _ in range(3)]
    assert temps == [2.0, 1.0, 0.5]


# -- swarm and repulsion ----------------------------------------------------------------------------
def test_swarm_with_zero_coefficients_is_plain_ars():
    plain = trainer(population=3, directions=2)
    swarm = trainer(population=3, directions=2, swarm=True, swarm_inertia=0.0, swarm_cognitive=0.0, swarm_social=0.0)
    for _ in range(4):
        plain.step()
        swarm.step()
    assert torch.equal(plain.state.theta, swarm.state.theta)


def test_swarm_inertia_carries_the_previous_velocity():
    """v2 = w·v1 + Δθ_2, where Δθ_2 is measured on a twin without inertia: after one step
    both stand at the same θ1 (v0 = 0), so the twin's second velocity is the ARS step alone."""
    options = dict(population=2, directions=2, swarm=True, swarm_cognitive=0.0, swarm_social=0.0)
    t, twin = trainer(swarm_inertia=0.5, **options), trainer(swarm_inertia=0.0, **options)
    t.step()
    twin.step()
    assert torch.equal(t.state.theta, twin.state.theta)
    v1, theta1 = t.state.velocity.double(), t.state.theta.double()
    t.step()
    twin.step()
    ars2 = twin.state.velocity.double()
    assert torch.allclose(t.state.velocity.double(), 0.5 * v1 + ars2, rtol=1e-6, atol=1e-7)
    assert torch.allclose(t.state.theta.double() - theta1, 0.5 * v1 + ars2, rtol=1e-5, atol=1e-6)
    assert (0.5 * v1).norm() > 0.1 * ars2.norm()  # the carried part is large enough to be seen


def test_repulsion_pushes_to_the_radius():
    params = RepulsionParams(strength=1.0, radius=0.1)
    best = torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    radius = tabu_radius(params, best, torch.zeros(4, dtype=torch.float64))
    assert math.isclose(radius, 0.2)  # a tenth of the way the best has come from θ0
    inside = best + torch.tensor([0.05, 0.0, 0.0, 0.0], dtype=torch.float64)
    moved, pushed = repel(params, inside, best, radius)
    assert pushed and math.isclose(float((moved - best).norm()), radius) and moved[1:].abs().sum() == 0
    half, _ = repel(RepulsionParams(0.5, 0.1), inside, best, radius)
    assert math.isclose(float((half - best).norm()), 0.05 + 0.5 * (radius - 0.05))
    outside = best + torch.tensor([0.3, 0.0, 0.0, 0.0], dtype=torch.float64)
    assert repel(params, outside, best, radius) == (outside, False)
    assert repel(params, best.clone(), best, radius)[1] is False  # a clone sitting on the best


def _repulsion_iteration(theta: torch.Tensor) -> tuple[int, float]:
    """One population iteration with repulsion on and zero ARS steps; member 0 is the best."""
    members, size = theta.shape
    params = PopulationParams(
        members, TruncationParams(), AnnealingParams(), SwarmParams(), RepulsionParams(strength=1.0, radius=0.1)
    )
    state = PopulationState.start(torch.zeros(size), members, 0.02, 0.03, annealing=False, swarm=False)
    state.theta = theta.clone()
    pop = Population(params, 0, state, torch.zeros(size))
    rewards = np.tile(np.array([[1.0, -1.0]]), (members, 1)) - np.arange(members)[:, None]  # member 0 best
    record = pop.advance(
        0,
        rewards,
        [ARSStep(np.array([0]), np.array([0.0]), 1.0)] * members,
        lambda m, s: torch.zeros(size, dtype=torch.float64),
    )
    return record.repelled, record.repel_radius


def test_repulsion_fires_on_a_crowded_population_and_not_on_a_spread_one():
    """Ten members 100-D: the best has come ‖θ_b − θ_0‖ = 10 from the start, so R = 1.
    Crowded: the others 0.2–0.5 from the best (clones a few steps old) -> all nine pushed
    to R; spread: the others 3–8 away (their own routes) -> none."""
    g = torch.Generator().manual_seed(0)
    best = torch.zeros(100)
    best[0] = 10.0
    offsets = torch.randn(9, 100, generator=g)
    offsets /= offsets.norm(dim=1, keepdim=True)
    crowded = torch.cat([best[None], best + offsets * torch.linspace(0.2, 0.5, 9)[:, None]])
    spread = torch.cat([best[None], best + offsets * torch.linspace(3.0, 8.0, 9)[:, None]])
    assert _repulsion_iteration(crowded) == (9, pytest.approx(1.0))
    assert _repulsion_iteration(spread) == (0, pytest.approx(1.0))


def test_repulsion_fires_in_a_truncated_run_and_is_logged(tmp_path):
    """In a real population run with truncation, clones crowd the best and get pushed."""
    t = trainer(population=4, directions=2, generation_every=2, repulsion=1.0)
    fired = [t.step().population.repelled for _ in range(16)]
    assert sum(fired) > 0, fired


def test_members_without_operators_are_independent_learners():
    """Member 0 of a plain population follows exactly the single-learner trajectory."""
    single = trainer(directions=3)
    pop = trainer(directions=3, population=5)
    for _ in range(5):
        single.step()
        pop.step()
    assert torch.equal(single.state.theta[0], pop.state.theta[0])
    assert len({tuple(row.tolist()) for row in pop.state.theta}) == 5


def test_first_line_names_the_population_operators():
    assert population_line(TrainConfig()) == ""
    assert population_line(TrainConfig(population=2)).endswith("independent lineages (no operator on)")
    line = population_line(TrainConfig(population=2, generation_every=10, pbt_perturb=True))
    assert "truncation every 10 (kill 0.5, from best, PBT)" in line and "independent" not in line


# -- the command line: resume, world sizes, validation ------------------------------------------------
ALL_ON = [
    "--population",
    "6",
    "--directions",
    "3",
    "--branch-batch",
    "8",
    "--generation-every",
    "3",
    "--pbt-perturb",
    "true",
    "--clone-from",
    "top",
    "--anneal-t0",
    "1",
    "--swarm",
    "true",
    "--repulsion",
    "0.5",
    "--guard-every",
    "2",
]


def _population_arrays(run_dir):
    with h5py.File(checkpoint_file(run_dir)) as f:
        return {k: np.asarray(v) for k, v in f["population"].items()}


def test_population_resume_is_bit_exact_across_world_sizes(tmp_path):
    straight = run_train(ALL_ON + ["--iterations", "14", "--run-dir", str(tmp_path / "a")])
    assert straight.returncode == 0, straight.stderr
    first = run_train(ALL_ON + ["--iterations", "8", "--checkpoint-every", "4", "--run-dir", str(tmp_path / "b")])
    assert first.returncode == 0, first.stderr
    resumed = run_cli(["--resume", str(tmp_path / "b"), "--iterations", "14"], ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    a, b = inspect_json(tmp_path / "a"), inspect_json(tmp_path / "b")
    assert a["params_sha256"] == b["params_sha256"] and b["world_sizes"] == [[0, 1], [8, 2]]
    arrays_a, arrays_b = _population_arrays(tmp_path / "a"), _population_arrays(tmp_path / "b")
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        np.testing.assert_array_equal(arrays_a[name], arrays_b[name], err_msg=name)
    assert len(arrays_a["lineage"]) == 4 * 3  # 4 generations of 3 clones
    members_a, members_b = _members(tmp_path / "a"), _members(tmp_path / "b")
    np.testing.assert_array_equal(members_a["iteration"], np.arange(1, 15))
    for name in members_a:  # the resumed run's table is the straight run's, row for row
        np.testing.assert_array_equal(members_a[name], members_b[name], err_msg=name)


def _members(run_dir):
    with h5py.File(Path(run_dir) / "history.h5") as f:
        return {k: np.asarray(v) for k, v in f["members"].items()}


def _metrics(run_dir):
    with h5py.File(Path(run_dir) / "history.h5") as f:
        return {k: np.asarray(v) for k, v in f["metrics"].items()}


def test_members_table_holds_what_truncation_ranked(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--population", "4", "--directions", "2", "--generation-every", "2", "--kill-fraction", "0.5"]
    status, err = train_in_process([*args, "--iterations", "6", "--run-dir", str(run_dir)], capsys)
    assert status == 0, err
    members, metrics = _members(run_dir), _metrics(run_dir)
    np.testing.assert_array_equal(members["iteration"], metrics["iteration"])
    assert members["reward_mean"].shape == (6, 4) and (members["samples_mean"] > 0).all()
    # without annealing a member's fitness is its measured reward: the metrics' best is the row's best
    np.testing.assert_array_equal(members["reward_mean"].max(axis=1), metrics["fitness_best"])
    for i in (1, 3, 5):  # generations end at iterations 2, 4, 6: the worse half becomes clones of the best
        ranked = np.argsort(-members["reward_mean"][i], kind="stable")
        np.testing.assert_array_equal(members["parent"][i][np.sort(ranked[2:])], [ranked[0]] * 2)
        np.testing.assert_array_equal(members["born"][i][np.sort(ranked[2:])], [i + 1] * 2)
    lineage = _population_arrays(run_dir)["lineage"]  # (iteration, child, parent) of every cloning
    assert len(lineage) == 6 and set(lineage[:, 0]) == {2, 4, 6}


def test_64_members_on_1_and_5_ranks(tmp_path):
    """No deadlock with 5 ranks oversubscribed on this machine's cores (a hang fails by
    timeout; 64 members do not divide evenly), and the same parameters on 1 and 5 ranks."""
    hashes = {}
    for ranks in (1, 5):
        run_dir = tmp_path / f"n{ranks}"
        args = [
            "--population",
            "64",
            "--directions",
            "2",
            "--iterations",
            "6",
            "--generation-every",
            "2",
            "--anneal-t0",
            "1",
            "--swarm",
            "true",
            "--repulsion",
            "1",
            "--guard-every",
            "1",
            "--branch-batch",
            "16",
            "--run-dir",
            str(run_dir),
        ]
        done = run_train(args, ranks=ranks, timeout=240)
        assert done.returncode == 0, done.stderr
        info = inspect_json(run_dir)
        assert info["population"]["members"] == 64 and info["world_size"] == ranks
        assert info["population"]["clonings"] == 3 * 32
        hashes[ranks] = info["params_sha256"]
    assert hashes[1] == hashes[5]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--population", "0"], "--population: must be an integer >= 1"),
        (["--generation-every", "5"], "--generation-every: needs --population >= 2"),
        (["--population", "4", "--kill-fraction", "1"], "--kill-fraction: must be in [0, 1)"),
        (["--population", "4", "--clone-from", "worst"], "--clone-from: must be one of"),
        (["--population", "4", "--rank-by", "score"], "--rank-by: must be one of"),
        (["--rank-by", "return"], "--rank-by: return needs --population >= 2"),
        (["--population", "2", "--rank-by", "return", "--anneal-t0", "1"], "--rank-by: return needs --anneal-t0 0"),
        (["--anneal-cooling", "1.5"], "--anneal-cooling: must be in (0, 1]"),
    ],
)
def test_bad_population_options_exit_2(tmp_path, args, message):
    done = run_train(args + ["--run-dir", str(tmp_path / "run")])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hpcars.train: error: {message}"), lines
    assert not (tmp_path / "run").exists()
