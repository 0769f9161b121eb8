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
3. computes every member's ARS step from the same rewards (``ars.ars_step``),
   regenerates the kept directions and forms Σ w_k δ_k in float64 in a fixed order;
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hpcars.algorithm.ars import SKIP_NONFINITE, ARSHyper, ARSStep
from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.fitness import shaped_step
from hpcars.algorithm.models import Normalized
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import LowRank, LowRankBranches, make_perturbation
from hpcars.algorithm.perturbation.check import PerturbationCheck, check_perturbation, refuse_foreign_uses
from hpcars.algorithm.runningstat import RunningStat
from hpcars.algorithm.spaces import SearchSpace, SpaceOptions, make_space
from hpcars.config import TrainConfig
from hpcars.errors import ConfigError, DivergenceError, NonFiniteRewardError
from hpcars.population import members as member_table
from hpcars.population.annealing import AnnealingParams
from hpcars.population.judge import OLD, PERTURBED, BranchLayout
from hpcars.population.layer import Population, PopulationParams, PopulationRecord, best_member
from hpcars.population.repulsion import RepulsionParams
from hpcars.population.state import PopulationState
from hpcars.population.swarm import SwarmParams
from hpcars.population.truncation import TruncationParams
from hpcars.run.checkpoint import params_sha256
from hpcars.run.initial import InitialWeights, initial_model
from hpcars.runtime.comm import Transport, partition, shares
from hpcars.runtime.devices import branch_memory
from hpcars.runtime.messages import branch_schema, decode_branches, encode_branches
from hpcars.runtime.schedule import make_schedule
from hpcars.runtime.update_log import AsyncRecord
from hpcars.tasks.base import ObsMoments, Task

#: what ``branch_params`` gives the task: a dense stack, or low-rank branches on shared weights
Branches = torch.Tensor | LowRankBranches


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


def call_width(branch_batch: int, branches: int) -> int:
    """Branches per batched call: ``--branch-batch``, or fewer when an iteration has fewer branches —
    the smallest power of two that holds them all. The same on every rank whatever its share (a
    short call is padded), so a branch is computed by the same kernels at any world size: a
    matrix product's row can change its last bits with the number of rows in the call (on an
    AMD EPYC with MKL, calls of 1-3 rows round row 0 differently from wider ones) and with its
    position in a call whose width is not a power of two (6 and 48 do, 1-64 in powers of two
    do not, measured with ``tests/test_world_size.py``'s check)."""
    return min(branch_batch, 1 << max(0, (branches - 1).bit_length()))


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


class ARSTrainer:
    def __init__(
        self,
        cfg: TrainConfig,
        task: Task,
        transport: Transport,
        devices: Sequence[torch.device],
        initial: InitialWeights | None = None,
    ):
        self.cfg = cfg
        self.task = task
        self.transport = transport
        self.noise = NoiseSource(cfg.seed)
        template, self.init_report = initial_model(task, cfg.variant, initial)
        self.models = [BatchedModel(copy.deepcopy(template), d) for d in devices]
        self.spec: ParamSpec = self.models[0].spec
        self.primary = self.models[0].device
        theta0 = self.spec.flatten(self.models[0].module).to(self.primary, torch.float32)
        self.space: SearchSpace = make_space(space_options(cfg), self.spec, theta0)
        self.budget = branch_memory(cfg.branch_memory, self.primary)
        self.perturbation = make_perturbation(
            cfg.perturbation,
            self.models[0].module,
            self.space.size,
            cfg.perturbation_rank,
            self.budget,
            self.space.kind != "full",
        )
        self.perturbation_check = self._check_perturbation(cfg, task)
        self.legacy_width = self.perturbation.width(cfg.branch_batch)  # runs before call_width (their checkpoints)
        self.params = population_params(cfg)
        state = PopulationState.start(
            self.space.initial(),
            cfg.population,
            cfg.step_size,
            cfg.noise_std,
            self.params.annealing.enabled,
            self.params.swarm.enabled,
        )
        self.population = Population(self.params, cfg.seed, state, self.space.initial())
        self.obs_stat = RunningStat.empty(task.input_dim) if cfg.variant == "v2" else None
        self.iteration = 0
        self.total_samples = 0
        self.total_episodes = 0
        self.schema = branch_schema(
            task.input_dim if self.obs_stat else 0, cfg.prompts if cfg.fitness == "group-zscore" else 0
        )
        self.skipped_steps = 0
        self.layout = BranchLayout(cfg.directions, cfg.anneal_pairs if self.params.annealing.enabled else 0)
        self.per_member = self.layout.per_member
        self.width = self.perturbation.width(call_width(cfg.branch_batch, self.per_member * cfg.population))
        episodic = task.episodes_per_branch > 0
        self.schedule = make_schedule(
            cfg.schedule,
            transport,
            self.per_member * cfg.population,
            len(devices),
            cfg.branch_batch,
            episodic,
            self.schema.width,
        )

    def _check_perturbation(self, cfg: TrainConfig, task: Task) -> PerturbationCheck | None:
        """Low-rank branches that hooks compute: refuse a parameter no hook can see (on the task's
        example inputs); ``--check-perturbation``: compare them with explicit weights, refuse if not exact."""
        module = self.models[0].module
        example = getattr(task, "example_inputs", None)
        hooked = isinstance(self.perturbation, LowRank) and not self.models[0].stacked
        if example is None:
            if cfg.check_perturbation:
                raise ConfigError("--check-perturbation", f"task {task.name} gives no example inputs to check on")
            return None
        inputs = example(self.primary)
        if hooked and not cfg.check_perturbation:
            refuse_foreign_uses(module, inputs, {})
        if not cfg.check_perturbation:
            return None
        report = check_perturbation(
            module, inputs, cfg.perturbation, cfg.perturbation_rank, cfg.noise_std, min(4, 2 * cfg.directions), cfg.seed
        )
        if not report.exact():
            raise ConfigError("--check-perturbation", report.describe())
        return report

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
        """The branches of global ids ``branches`` as the perturbation kind hands them to the model
        (dense: the searched vectors [len, d]): θ_m ± ν_m δ_k for a perturbed branch, the anchor or
        the current θ_m for a judge row (``population.judge``). Each direction is drawn once, for
        both of its signs."""
        layout, members = self.layout, self.state.members
        member = np.array([layout.member(g) for g in branches])
        kind = np.array([layout.kind(g) for g in branches])
        bases, owner = self.state.theta.to(device), member.copy()
        old = np.flatnonzero(kind == OLD)
        if old.size:
            assert self.state.anchor is not None  # judge rows exist only with annealing, which keeps anchors
            bases = torch.cat((bases, self.state.anchor.to(device)))
            owner[old] += members
        scale = torch.zeros(len(branches), dtype=torch.float32, device=device)
        which = np.zeros(len(branches), dtype=np.int64)  # judge rows (scale 0) point at any finite row
        drawn: list[torch.Tensor] = []
        perturbed = np.flatnonzero(kind == PERTURBED)
        noise_std = torch.as_tensor(self.state.noise_std, dtype=torch.float32, device=device)
        direction = np.array([(g % self.per_member) // 2 for g in branches])
        for m in np.unique(member[perturbed]):
            rows = perturbed[member[perturbed] == m]
            unique, inverse = np.unique(direction[rows], return_inverse=True)
            which[rows] = sum(int(d.shape[0]) for d in drawn) + inverse
            drawn.append(self.directions(iteration, int(m), unique.tolist(), device))
            signs = torch.tensor([1.0 if branches[r] % 2 == 0 else -1.0 for r in rows], device=device)
            scale[torch.as_tensor(rows, device=device)] = noise_std[int(m)] * signs
        size = self.perturbation.noise_size
        if not drawn:  # judge rows only
            drawn = [torch.zeros(1, size, dtype=torch.float32, device=device)]
        directions = drawn[0] if len(drawn) == 1 else torch.cat(drawn)  # no copy for one member
        at = torch.as_tensor(owner, device=device)
        return self.perturbation.branches(bases, at, scale, directions, torch.as_tensor(which, device=device))

    # -- one iteration ----------------------------------------------------------------
    def score_branches(self, model: BatchedModel, branches: list[int], iteration: int) -> np.ndarray:
        """Message rows (``self.schema``) for ``branches`` of ``iteration`` (the noise and
        data key) at the current parameters, in fixed-size batched calls of ``self.width``."""
        if not branches:
            return np.zeros((0, self.schema.width))
        context = self.task.begin_iteration(iteration, 0, model.device)
        width = self.width
        rows = []
        for start in range(0, len(branches), width):
            chunk = branches[start : start + width]
            padded = chunk + [chunk[-1]] * (width - len(chunk))
            stack = self.branch_params(padded, model.device, iteration)
            params = self.space.to_params(stack) if isinstance(stack, torch.Tensor) else stack  # low rank: full space
            outcome = self.task.rewards(model, params, context, self.layout.episode_ids(chunk))
            rows.append(encode_branches(self.schema, outcome))
        return np.concatenate(rows)

    def step_vector(self, member: int, step: ARSStep, iteration: int) -> torch.Tensor:
        """Σ w_k δ_k of one member's step (in the kind's ``update_dtype``, fixed chunks of
        ``branch_batch`` directions); zeros for a skipped step."""
        total = torch.zeros(self.space.size, dtype=self.perturbation.update_dtype, device=self.primary)
        width = self.cfg.branch_batch
        for start in range(0, len(step.kept), width):
            kept = step.kept[start : start + width].tolist()
            weights = torch.as_tensor(step.weights[start : start + width], device=self.primary)

            def draw(cols: slice, kept: list[int] = kept) -> torch.Tensor:
                return self.directions(iteration, member, kept, self.primary, cols)

            self.perturbation.step(weights, draw, total)
        return total

    def merge_observations(self, obs: ObsMoments) -> None:
        """Fold one iteration's input moments into the V2 statistics: the branches' moments
        merged in branch order into one (``ObsMoments.merged``), then that into the statistics."""
        self.absorb_moments(obs.merged())

    def absorb_moments(self, moments: RunningStat) -> None:
        """Merge one update's input moments into the V2 statistics (and the models' normaliser)."""
        assert self.obs_stat is not None  # input moments come with V2 only
        self.set_obs_stat(self.obs_stat.merge(moments))

    def set_obs_stat(self, stat: RunningStat) -> None:
        """Adopt V2 statistics and load their normaliser into every model copy (frozen
        until the next iteration)."""
        self.obs_stat = stat
        mean, inv_std = stat.normaliser()
        for model in self.models:
            module = model.module
            assert isinstance(module, Normalized)  # V2's models (initial_model)
            module.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            module.inv_std.copy_(torch.as_tensor(inv_std, dtype=torch.float32))

    def _ars_steps(self, rewards: np.ndarray, groups: np.ndarray | None = None) -> list[ARSStep]:
        """Each member's step from its rewards [M, 2N] (and per-prompt rewards [M, 2N, K]), with its
        own α and ν, shaped by ``--fitness``."""
        cfg, s = self.cfg, self.state
        steps = []
        for m, r in enumerate(rewards):
            hyper = ARSHyper(float(s.step_size[m]), float(s.noise_std[m]), cfg.directions, cfg.top)
            steps.append(shaped_step(cfg.fitness, r, hyper, None if groups is None else groups[m]))
            if steps[-1].skipped == SKIP_NONFINITE and cfg.on_nonfinite == "fail":
                bad = (m * self.per_member + np.flatnonzero(~np.isfinite(r))).tolist()
                raise NonFiniteRewardError(f"iteration {self.iteration}: non-finite reward in branches {bad}")
        return steps

    def step(self) -> IterationRecord:
        t0 = time.perf_counter()
        before = self.transport.bytes_moved
        j = self.iteration
        rows, comm_s = self.schedule.gather(lambda device, ids: self.score_branches(self.models[device], ids, j), j)
        comm_bytes = self.transport.bytes_moved - before
        t2 = time.perf_counter()
        t1 = t2 - comm_s

        gathered = decode_branches(self.schema, rows)
        rewards, samples = gathered.rewards, gathered.samples
        by_member, judge = self.layout.split(rewards)
        member_samples = self.layout.split(samples)[0]
        # --rank-by return: the population ranks on the return, the survival bonus (shift per step) given back
        ranked = None
        if self.cfg.rank_by == "return" and self.task.episodes_per_branch:  # only episodes take a shift
            ranked = by_member + self.cfg.shift * member_samples
        groups = None
        if gathered.groups is not None:  # per member, its perturbed branches' per-prompt rewards [M, 2N, K]
            groups = gathered.groups.reshape(-1, self.per_member, gathered.groups.shape[1])[
                :, : 2 * self.cfg.directions
            ]
        steps = self._ars_steps(by_member, groups)
        done: PopulationRecord = self.population.advance(
            j, by_member, steps, lambda member, step: self.step_vector(member, step, j), judge, ranked
        )
        skipped = [st.skipped for st in steps if st.skipped]
        self.skipped_steps += len(skipped)
        if gathered.obs is not None:
            self.merge_observations(gathered.obs)
        after_step = getattr(self.task, "after_step", None)  # e.g. new batch priorities
        if after_step is not None:
            after_step(self.models[0], self.theta, self.iteration)
        t3 = time.perf_counter()

        self.iteration += 1
        members = {}
        if self.cfg.population > 1:  # each member's part of the iteration: the history's members table
            members = member_table.row(self.iteration, by_member, member_samples, self.state)
        self.total_samples += int(samples.sum())
        self.total_episodes += len(rewards) * self.task.episodes_per_branch
        finite = rewards[np.isfinite(rewards)]
        sigmas = [st.sigma_r for st in steps if np.isfinite(st.sigma_r)]
        return IterationRecord(
            iteration=self.iteration,
            reward_mean=float(finite.mean()) if finite.size else float("nan"),
            reward_max=float(finite.max()) if finite.size else float("nan"),
            sigma_r=float(np.mean(sigmas)) if sigmas else float("nan"),
            skipped=(skipped[0] + (f" ({len(skipped)} members)" if len(skipped) > 1 else "")) if skipped else "",
            update_norm=done.update_norm,
            samples=int(samples.sum()),
            total_samples=self.total_samples,
            total_episodes=self.total_episodes,
            elapsed_s=0.0,
            rollout_s=t1 - t0,
            comm_s=t2 - t1,
            update_s=t3 - t2,
            comm_bytes=comm_bytes,
            population=done if self.cfg.population > 1 else None,
            members=members,
        )

    # -- checks and results -----------------------------------------------------------
    def params_sha256(self) -> str:
        """SHA-256 of all members' parameters (member order); plain ARS: of θ."""
        return params_sha256(self.space.to_params(self.state.theta).cpu().numpy())

    def guard(self) -> None:
        """All ranks compare checksums of every member's θ; raise DivergenceError on any mismatch."""
        digests = self.transport.allgather_bytes(bytes.fromhex(self.params_sha256()))
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad:
            raise DivergenceError(
                f"parameters diverged at iteration {self.iteration}: rank(s) {bad} differ from rank 0 "
                f"(world size {len(digests)})"
            )

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
