"""ARS learners — one, or a population of M — spread over the ranks of a transport.

Branches are numbered globally: branch g belongs to member g // 2N, and within the
member branch 2k is θ_m + ν_m δ_k and branch 2k + 1 is θ_m − ν_m δ_k, where δ_k is
direction k of (iteration, member). With M = 1 this is plain ARS. Per iteration j
every rank:

1. scores its branches of the 2N·M (``hpcars.runtime.schedule``: a fixed contiguous share, or
   chunks claimed from a shared counter), regenerating the directions it needs from
   the common seed, in batched calls of exactly ``call_width`` branches (a short
   call is padded; a call may mix members), so a branch's reward is computed by the
   same kernels whatever the world size or schedule;
2. all-gathers one row per branch (``messages.branch_schema``: reward, samples,
   and for V2 the moments of the inputs the branch saw) — the only message that
   depends on the iteration's work (the training loop adds a 4-byte stop vote);
3. turns every member's rewards into its step with ``hpcars.algorithm.update`` (the
   rule or fitness shaping, the kept directions regenerated and Σ w_k δ_k formed in a
   fixed order — the one path ask/tell, the asynchronous log and its replay use too);
   ``hpcars.population`` applies the steps and its operators (annealing, swarm,
   repulsion, truncation), so all ranks hold bitwise identical parameters for all
   members without ever sending them;
4. (V2) merges every branch's input moments, in branch order, into one, and that
   into the running statistics (one normaliser shared by the population), which
   become the (frozen) normaliser of the next iteration.

θ_m is the vector ARS searches: with the default ``--search-space full`` the model's
parameters; otherwise a compressed parameterisation z that ``hpcars.algorithm.spaces`` maps to
the model's parameters for scoring (noise, updates and operators all live in z).

Supervised members share the iteration's mini-batch (common random numbers make
their fitness comparable); RL members get their own env seeds (from g).

Every ``guard_every`` iterations the ranks compare SHA-256 checksums of all θ and raise
``DivergenceError`` on a mismatch.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hpcars.algorithm import update
from hpcars.algorithm.ars import ARSStep
from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.models import Normalized
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import LowRank, Perturbation, make_perturbation
from hpcars.algorithm.perturbation.check import PerturbationCheck, before_training
from hpcars.algorithm.runningstat import RunningStat
from hpcars.algorithm.spaces import SearchSpace, SpaceOptions, make_space
from hpcars.config import TrainConfig
from hpcars.errors import ConfigError, DivergenceError
from hpcars.population import members as member_table
from hpcars.population.annealing import AnnealingParams
from hpcars.population.judge import BranchLayout
from hpcars.population.layer import Population, PopulationParams, PopulationRecord, best_member
from hpcars.population.repulsion import RepulsionParams
from hpcars.population.state import PopulationState
from hpcars.population.swarm import SwarmParams
from hpcars.population.truncation import TruncationParams
from hpcars.run import scoring
from hpcars.run.checkpoint import params_sha256
from hpcars.run.initial import InitialWeights, InitReport, initial_model
from hpcars.run.scoring import Branches
from hpcars.run.update_log import AsyncRecord
from hpcars.runtime.comm import Transport, partition, shares
from hpcars.runtime.devices import branch_memory
from hpcars.runtime.messages import branch_schema, decode_branches
from hpcars.runtime.schedule import make_schedule
from hpcars.tasks.base import BranchOutcome, ObsMoments, Task


@dataclass(frozen=True)
class IterationRecord:
    """What one iteration did; rank 0 writes one metrics row from it.

    The scalar fields are the columns of ``metrics.csv``, in order. The trainer
    fills all but two, which the training loop completes: ``elapsed_s`` (the run's
    clock at the end of the iteration) and ``comm_bytes`` (bytes this rank received
    in all of the iteration's collectives; the trainer's own figure is the rewards
    gather).
    """

    iteration: int
    reward_mean: float
    reward_max: float
    sigma_r: float
    skipped: str
    update_norm: float
    samples: int
    total_samples: int
    total_episodes: int
    elapsed_s: float
    rollout_s: float
    comm_s: float
    update_s: float
    comm_bytes: int
    eval: dict[str, float] = field(default_factory=dict)  # on evaluation iterations: the task's eval_columns
    population: PopulationRecord | None = None  # population runs (M > 1) only
    members: dict[str, np.ndarray] = field(default_factory=dict)  # M > 1: a row of ``population.members``
    asynchronous: AsyncRecord | None = None  # --schedule async only


def iteration_record(
    iteration: int, rewards: np.ndarray, steps: list[ARSStep], done: PopulationRecord
) -> IterationRecord:
    """The rewards' and steps' columns of an iteration's record (the caller fills the counters and clocks)."""
    finite = rewards[np.isfinite(rewards)]
    sigmas = [st.sigma_r for st in steps if np.isfinite(st.sigma_r)]
    skipped = [st.skipped for st in steps if st.skipped]
    return IterationRecord(
        iteration=iteration,
        reward_mean=float(finite.mean()) if finite.size else float("nan"),
        reward_max=float(finite.max()) if finite.size else float("nan"),
        sigma_r=float(np.mean(sigmas)) if sigmas else float("nan"),
        skipped=(skipped[0] + (f" ({len(skipped)} members)" if len(skipped) > 1 else "")) if skipped else "",
        update_norm=done.update_norm,
        samples=0,
        total_samples=0,
        total_episodes=0,
        elapsed_s=0.0,
        rollout_s=0.0,
        comm_s=0.0,
        update_s=0.0,
        comm_bytes=0,
    )


def check_perturbation(
    cfg: TrainConfig, task: Task, model: BatchedModel, perturbation: Perturbation
) -> PerturbationCheck | None:
    """Before training (``check.before_training``): refuse a parameter no low-rank hook can see, and
    with ``--check-perturbation`` compare the branches with explicit weights."""
    example = getattr(task, "example_inputs", None)
    if example is None:
        if cfg.check_perturbation:
            raise ConfigError("--check-perturbation", f"task {task.name} gives no example inputs to check on")
        return None
    hooked = isinstance(perturbation, LowRank) and not model.stacked
    compare = dict(perturbation=cfg.perturbation, rank=cfg.perturbation_rank, noise_std=cfg.noise_std)
    compare.update(branches=min(4, 2 * cfg.directions), seed=cfg.seed)
    return before_training(model.module, example(model.device), hooked, cfg.check_perturbation, compare)


def load_normaliser(models: Sequence[BatchedModel], stat: RunningStat) -> None:
    """V2: every model copy's normaliser from the statistics (frozen until the next iteration)."""
    mean, inv_std = stat.normaliser()
    for model in models:
        module = model.module
        assert isinstance(module, Normalized)  # V2's models (initial_model)
        module.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        module.inv_std.copy_(torch.as_tensor(inv_std, dtype=torch.float32))


def guard(transport: Transport, sha256: str, where: str) -> None:
    """Every rank compares its parameters' checksum with rank 0's; ``DivergenceError`` naming the
    ranks that differ."""
    digests = transport.allgather_bytes(bytes.fromhex(sha256))
    bad = [r for r, d in enumerate(digests) if d != digests[0]]
    if bad:
        raise DivergenceError(
            f"parameters diverged at {where}: rank(s) {bad} differ from rank 0 (world size {len(digests)})"
        )


def space_options(cfg: TrainConfig) -> SpaceOptions:
    """The search-space options of ``cfg``."""
    return SpaceOptions(cfg.search_space, cfg.sparsity, cfg.bits, cfg.subspace_dim, cfg.seed)


def population_params(cfg: TrainConfig) -> PopulationParams:
    """The population options of ``cfg`` as the operators' typed parameters."""
    return PopulationParams(
        members=cfg.population,
        truncation=TruncationParams(cfg.generation_every, cfg.kill_fraction, cfg.clone_from, cfg.pbt_perturb),
        annealing=AnnealingParams(cfg.anneal_t0, cfg.anneal_cooling, cfg.anneal_pairs),
        swarm=SwarmParams(cfg.swarm, cfg.swarm_inertia, cfg.swarm_cognitive, cfg.swarm_social),
        repulsion=RepulsionParams(cfg.repulsion, cfg.repulsion_radius),
    )


@dataclass(frozen=True)
class Search:
    """What ARS searches and how: the model on each device, the search space, the perturbation kind."""

    models: list[BatchedModel]
    space: SearchSpace
    perturbation: Perturbation
    budget: int  # --branch-memory in bytes
    init_report: InitReport | None  # what --init-from loaded


def build_search(
    cfg: TrainConfig, task: Task, devices: Sequence[torch.device], initial: InitialWeights | None
) -> Search:
    template, report = initial_model(task, cfg.variant, initial)
    models = [BatchedModel(copy.deepcopy(template), d) for d in devices]
    primary, module = models[0].device, models[0].module
    theta0 = models[0].spec.flatten(module).to(primary, torch.float32)
    space = make_space(space_options(cfg), models[0].spec, theta0)
    budget = branch_memory(cfg.branch_memory, primary)
    kind = make_perturbation(
        cfg.perturbation, module, space.size, cfg.perturbation_rank, budget, compressed=space.kind != "full"
    )
    return Search(models, space, kind, budget, report)


class ARSTrainer:
    def __init__(
        self,
        cfg: TrainConfig,
        task: Task,
        transport: Transport,
        devices: Sequence[torch.device],
        initial: InitialWeights | None = None,
    ):
        self.cfg, self.task, self.transport = cfg, task, transport
        self.noise = NoiseSource(cfg.seed)
        search = build_search(cfg, task, devices, initial)
        self.models, self.space, self.perturbation = search.models, search.space, search.perturbation
        self.budget, self.init_report = search.budget, search.init_report
        self.spec: ParamSpec = self.models[0].spec
        self.primary = self.models[0].device
        self.perturbation_check = check_perturbation(cfg, task, self.models[0], self.perturbation)
        self.legacy_width = self.perturbation.width(cfg.branch_batch)  # runs before call_width (their checkpoints)
        self.params = population_params(cfg)
        self.rule = update.StepRule(cfg.directions, cfg.top, cfg.fitness, cfg.on_nonfinite)
        annealing, swarm = self.params.annealing.enabled, self.params.swarm.enabled
        state = PopulationState.start(
            self.space.initial(), cfg.population, cfg.step_size, cfg.noise_std, annealing, swarm
        )
        self.population = Population(self.params, cfg.seed, state, self.space.initial())
        self.obs_stat = RunningStat.empty(task.input_dim) if cfg.variant == "v2" else None
        self.iteration = self.total_samples = self.total_episodes = self.skipped_steps = 0
        groups = cfg.prompts if cfg.fitness == "group-zscore" else 0
        self.schema = branch_schema(task.input_dim if self.obs_stat else 0, groups)
        self.layout = BranchLayout(cfg.directions, cfg.anneal_pairs if annealing else 0)
        self.per_member = self.layout.per_member
        branches = self.per_member * cfg.population
        self.width = self.perturbation.width(scoring.call_width(cfg.branch_batch, branches))
        episodic = task.episodes_per_branch > 0
        self.schedule = make_schedule(
            cfg.schedule, transport, branches, len(devices), cfg.branch_batch, episodic, self.schema.width
        )

    @property
    def state(self) -> PopulationState:
        return self.population.state

    @property
    def episodes_per_iteration(self) -> int:
        """Training episodes one iteration runs: every branch of every member (0 for supervised tasks)."""
        return self.per_member * self.cfg.population * self.task.episodes_per_branch

    @property
    def best(self) -> int:
        """The member with the highest fitness (member 0 before the first measurement)."""
        return best_member(self.state.fitness)

    @property
    def theta(self) -> torch.Tensor:
        """The best member's model parameters [P] (the only member of plain ARS)."""
        return self.space.to_params(self.state.theta[self.best])

    # -- directions -------------------------------------------------------------------
    def directions(
        self, iteration: int, member: int, indices: Sequence[int], device: torch.device, entries: slice | None = None
    ) -> torch.Tensor:
        return self.noise.directions(
            iteration, member, indices, self.perturbation.noise_size, device=device, entries=entries
        )

    def branch_params(self, branches: list[int], device: torch.device, iteration: int) -> Branches:
        """The branches of global ids ``branches`` as the task gets them (``scoring.branch_params``)."""
        return scoring.branch_params(self, branches, device, iteration)

    def score_branches(self, model: BatchedModel, branches: list[int], iteration: int) -> np.ndarray:
        """Message rows for ``branches`` of ``iteration`` at the current parameters (``scoring.score_branches``)."""
        return scoring.score_branches(self, model, branches, iteration)

    def step_vector(self, member: int, step: ARSStep, iteration: int) -> torch.Tensor:
        """Σ w_k δ_k of one member's step (``update.step_vector``: the kind's ``update_dtype``, chunks
        of ``--branch-batch`` directions); zeros for a skipped step."""

        def draw(kept: list[int], cols: slice) -> torch.Tensor:
            return self.directions(iteration, member, kept, self.primary, cols)

        return update.step_vector(self.perturbation, step, draw, self.cfg.branch_batch, self.primary)

    def merge_observations(self, obs: ObsMoments) -> None:
        """Fold one iteration's input moments into the V2 statistics: the branches' moments
        merged in branch order into one (``ObsMoments.merged``), then that into the statistics."""
        self.absorb_moments(obs.merged())

    def absorb_moments(self, moments: RunningStat) -> None:
        """Merge one update's input moments into the V2 statistics (and the models' normaliser)."""
        assert self.obs_stat is not None  # input moments come with V2 only
        self.set_obs_stat(self.obs_stat.merge(moments))

    def set_obs_stat(self, stat: RunningStat) -> None:
        """Adopt V2 statistics and load their normaliser into every model copy."""
        self.obs_stat = stat
        load_normaliser(self.models, stat)

    def step(self) -> IterationRecord:
        t0 = time.perf_counter()
        before = self.transport.bytes_moved
        j = self.iteration
        rows, comm_s = self.schedule.gather(lambda device, ids: self.score_branches(self.models[device], ids, j), j)
        comm_bytes = self.transport.bytes_moved - before
        t2 = time.perf_counter()
        gathered = decode_branches(self.schema, rows)
        by_member, member_samples = self.layout.split(gathered.rewards)[0], self.layout.split(gathered.samples)[0]
        steps, done = self._update(j, gathered)
        t3 = time.perf_counter()

        self.iteration += 1
        members = {}
        if self.cfg.population > 1:  # each member's part of the iteration: the history's members table
            members = member_table.row(self.iteration, by_member, member_samples, self.state)
        self.total_samples += int(gathered.samples.sum())
        self.total_episodes += len(gathered.rewards) * self.task.episodes_per_branch
        record = iteration_record(self.iteration, gathered.rewards, steps, done)
        return dataclasses.replace(
            record,
            samples=int(gathered.samples.sum()),
            total_samples=self.total_samples,
            total_episodes=self.total_episodes,
            rollout_s=t2 - comm_s - t0,
            comm_s=comm_s,
            update_s=t3 - t2,
            comm_bytes=comm_bytes,
            population=done if self.cfg.population > 1 else None,
            members=members,
        )

    def _update(self, j: int, gathered: BranchOutcome) -> tuple[list[ARSStep], PopulationRecord]:
        """Every member's step from the gathered rows of iteration ``j``, the population's operators,
        and what follows a step: V2's statistics, the task's own update (e.g. batch priorities)."""
        by_member, judge = self.layout.split(gathered.rewards)
        # --rank-by return: the population ranks on the return, the survival bonus (shift per step) given back
        ranked = None
        if self.cfg.rank_by == "return" and self.task.episodes_per_branch:  # only episodes take a shift
            ranked = by_member + self.cfg.shift * self.layout.split(gathered.samples)[0]
        groups = None
        if gathered.groups is not None:  # per member, its perturbed branches' per-prompt rewards [M, 2N, K]
            per_member = gathered.groups.reshape(-1, self.per_member, gathered.groups.shape[1])
            groups = per_member[:, : 2 * self.cfg.directions]
        s, where = self.state, f"iteration {self.iteration}"
        steps = [  # each member's own α and ν (``update.member_step``)
            update.member_step(
                self.rule,
                r,
                float(s.step_size[m]),
                float(s.noise_std[m]),
                None if groups is None else groups[m],
                where,
                m * self.per_member,
            )
            for m, r in enumerate(by_member)
        ]
        done: PopulationRecord = self.population.advance(
            j, by_member, steps, lambda member, step: self.step_vector(member, step, j), judge, ranked
        )
        self.skipped_steps += sum(1 for st in steps if st.skipped)
        if gathered.obs is not None:
            self.merge_observations(gathered.obs)
        after_step = getattr(self.task, "after_step", None)  # e.g. new batch priorities
        if after_step is not None:
            after_step(self.models[0], self.theta, self.iteration)
        return steps, done

    # -- checks and results -----------------------------------------------------------
    def params_sha256(self) -> str:
        """SHA-256 of all members' parameters (member order); plain ARS: of θ."""
        return params_sha256(self.space.to_params(self.state.theta).cpu().numpy())

    def guard(self) -> None:
        """All ranks compare checksums of every member's θ; raise DivergenceError on any mismatch."""
        guard(self.transport, self.params_sha256(), f"iteration {self.iteration}")

    def evaluate(self) -> dict[str, float]:
        """The task's evaluation of the best member, its units (e.g. episodes) spread over the ranks."""
        units = list(partition(self.task.eval_units, self.transport.size, self.transport.rank))
        local = np.zeros((0, len(self.task.eval_fields)))
        if units:
            local = self.task.evaluate_units(self.models[0], self.theta, units, self.iteration)
        rows = self.transport.allgather_rows(local, shares(self.task.eval_units, self.transport.size))
        return self.task.summarize(rows)

    def describe(self) -> str:
        text = self.task.describe(self.models[0], self.theta)
        if self.cfg.population > 1:
            text = f"best member {self.best} of {self.cfg.population}: " + text
        return text

    def close(self) -> None:
        """Release what the schedule holds (the dynamic schedule's counter file)."""
        self.schedule.close()

    def named_params(self, member: int) -> dict[str, np.ndarray]:
        """Member ``member``'s model parameters, name -> a float32 array of its own (a copy)."""
        theta = self.space.to_params(self.state.theta[member])
        return {n: t.detach().cpu().numpy().copy() for n, t in self.spec.unflatten(theta).items()}
