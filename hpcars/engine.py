"""One ARS learner spread over the ranks of a transport.

Per iteration j every rank:

1. takes its contiguous share of the 2N branches (branch 2k is θ + νδ_k, branch
   2k + 1 is θ − νδ_k), regenerates the directions it needs from the common seed,
   and scores them with the task in batched calls of exactly ``branch_batch``
   branches (a short last call is padded), so a branch's reward is computed by the
   same kernels whatever the world size;
2. all-gathers one row per branch (``comm.branch_rows``: reward, samples, and for V2
   the moments of the inputs the branch saw) — the iteration's only message;
3. computes the same ARS step from the same rewards (``ars.ars_step``), regenerates
   the kept directions and applies θ += Σ w_k δ_k in float64 in a fixed order, so
   all ranks hold bitwise identical θ without ever sending it;
4. (V2) folds every branch's input moments, in branch order, into the running
   statistics, which become the (frozen) normaliser of the next iteration.

Every ``guard_every`` iterations the ranks compare SHA-256 checksums of θ and raise
``DivergenceError`` on a mismatch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from hpcars.ars import SKIP_NONFINITE, ARSHyper, ARSStep, ars_step
from hpcars.branches import BatchedModel, ParamSpec
from hpcars.checkpoint import Checkpoint, CheckpointError, params_sha256
from hpcars.comm import Transport, branch_row_width, branch_rows, partition, shares
from hpcars.config import TrainConfig
from hpcars.models import Normalized
from hpcars.noise import NoiseSource
from hpcars.runningstat import RunningStat
from hpcars.tasks.base import Task


class DivergenceError(RuntimeError):
    """Ranks hold different parameters: the run can no longer be trusted."""


class NonFiniteRewardError(RuntimeError):
    """A reward was NaN or infinite and the policy is ``--on-nonfinite fail``."""


@dataclass(frozen=True)
class IterationRecord:
    """What one iteration did; rank 0 writes one metrics row from it."""

    iteration: int
    reward_mean: float
    reward_max: float
    sigma_r: float
    skipped: str
    update_norm: float
    samples: int
    total_samples: int
    total_episodes: int
    rollout_s: float
    comm_s: float
    update_s: float
    comm_bytes: int
    eval: dict[str, float] = field(default_factory=dict)


class ARSTrainer:
    member = 0  # the population layer gives each member its own noise stream

    def __init__(self, cfg: TrainConfig, task: Task, transport: Transport, devices: Sequence[torch.device]):
        self.cfg = cfg
        self.task = task
        self.transport = transport
        self.noise = NoiseSource(cfg.seed)
        self.hyper = ARSHyper(cfg.step_size, cfg.noise_std, cfg.directions, cfg.top)
        template = task.build_model()
        if cfg.variant == "v2":
            template = Normalized(template, task.input_dim)
        self.models = [BatchedModel(copy.deepcopy(template), d) for d in devices]
        self.spec: ParamSpec = self.models[0].spec
        self.primary = self.models[0].device
        self.theta = self.spec.flatten(self.models[0].module).to(self.primary, torch.float32).clone()
        self.obs_stat = RunningStat.empty(task.input_dim) if cfg.variant == "v2" else None
        self.iteration = 0
        self.total_samples = 0
        self.total_episodes = 0
        self.row_width = branch_row_width(task.input_dim if self.obs_stat else 0)
        self.skipped_steps = 0
        self.counts = shares(2 * cfg.directions, transport.size)
        mine = list(partition(2 * cfg.directions, transport.size, transport.rank))
        # a rank's branches are dealt to its devices in contiguous runs
        self.device_branches = [mine[len(mine) * i // len(devices) : len(mine) * (i + 1) // len(devices)]
                                for i in range(len(devices))]

    # -- directions -------------------------------------------------------------------
    def directions(self, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        return self.noise.directions(self.iteration, self.member, indices, self.spec.size, device=device)

    # -- one iteration ----------------------------------------------------------------
    def _score(self, model: BatchedModel, branches: list[int]) -> np.ndarray:
        """Message rows (``comm.branch_row``) for ``branches``, in fixed-size batched calls."""
        if not branches:
            return np.zeros((0, self.row_width))
        context = self.task.begin_iteration(self.iteration, self.member, model.device)
        theta = self.theta.to(model.device)
        width = self.cfg.branch_batch
        rows = []
        for start in range(0, len(branches), width):
            chunk = branches[start : start + width]
            padded = chunk + [chunk[-1]] * (width - len(chunk))
            unique, inverse = np.unique([b // 2 for b in padded], return_inverse=True)
            delta = self.directions(unique.tolist(), model.device)[torch.as_tensor(inverse, device=model.device)]
            signs = torch.tensor([1.0 if b % 2 == 0 else -1.0 for b in padded], device=model.device)
            stack = theta + (self.cfg.noise_std * signs)[:, None] * delta
            outcome = self.task.rewards(model, stack, context, chunk)
            rows.append(branch_rows(outcome.rewards, outcome.samples, outcome.obs if self.obs_stat else None))
        return np.concatenate(rows)

    def _apply(self, step: ARSStep) -> float:
        """θ += Σ w_k δ_k (float64 accumulation, fixed order); returns ‖Δθ‖."""
        total = torch.zeros(self.spec.size, dtype=torch.float64, device=self.primary)
        width = self.cfg.branch_batch
        for start in range(0, len(step.kept), width):
            kept = step.kept[start : start + width].tolist()
            delta = self.directions(kept, self.primary).to(torch.float64)
            weights = torch.as_tensor(step.weights[start : start + width], device=self.primary)
            total += weights @ delta
        self.theta = (self.theta.to(torch.float64) + total).to(torch.float32)
        return float(total.norm())

    def _merge_observations(self, rows: np.ndarray) -> None:
        """Fold every branch's input moments into the V2 statistics, in branch order."""
        d = self.task.input_dim
        for row in rows:
            count, mean, m2 = row[2], row[3 : 3 + d], row[3 + d : 3 + 2 * d]
            self.obs_stat = self.obs_stat.merge(RunningStat(float(count), mean, m2))
        self._set_normaliser()

    def _set_normaliser(self) -> None:
        """Load the V2 statistics into every model copy (frozen until the next iteration)."""
        mean, inv_std = self.obs_stat.normaliser()
        for model in self.models:
            model.module.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            model.module.inv_std.copy_(torch.as_tensor(inv_std, dtype=torch.float32))

    def step(self) -> IterationRecord:
        t0 = time.perf_counter()
        local = np.concatenate([self._score(m, b) for m, b in zip(self.models, self.device_branches)])
        t1 = time.perf_counter()
        before = self.transport.bytes_moved
        rows = self.transport.allgather_rows(local, self.counts)
        comm_bytes = self.transport.bytes_moved - before
        t2 = time.perf_counter()

        rewards, samples = rows[:, 0], rows[:, 1]
        step = ars_step(rewards[0::2], rewards[1::2], self.hyper)
        if step.skipped == SKIP_NONFINITE and self.cfg.on_nonfinite == "fail":
            bad = np.flatnonzero(~np.isfinite(rewards)).tolist()
            raise NonFiniteRewardError(f"iteration {self.iteration}: non-finite reward in branches {bad}")
        update_norm = 0.0 if step.skipped else self._apply(step)
        self.skipped_steps += bool(step.skipped)
        if self.obs_stat is not None:
            self._merge_observations(rows)
        t3 = time.perf_counter()

        self.iteration += 1
        self.total_samples += int(samples.sum())
        self.total_episodes += len(rewards) * self.task.episodes_per_branch
        finite = rewards[np.isfinite(rewards)]
        return IterationRecord(
            iteration=self.iteration,
            reward_mean=float(finite.mean()) if finite.size else float("nan"),
            reward_max=float(finite.max()) if finite.size else float("nan"),
            sigma_r=step.sigma_r,
            skipped=step.skipped,
            update_norm=update_norm,
            samples=int(samples.sum()),
            total_samples=self.total_samples,
            total_episodes=self.total_episodes,
            rollout_s=t1 - t0,
            comm_s=t2 - t1,
            update_s=t3 - t2,
            comm_bytes=comm_bytes,
        )

    # -- checks and results -----------------------------------------------------------
    def params_sha256(self) -> str:
        return params_sha256(self.theta.cpu().numpy())

    def guard(self) -> None:
        """All ranks compare checksums of θ; raise DivergenceError on any mismatch."""
        digests = self.transport.allgather_bytes(bytes.fromhex(self.params_sha256()))
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        if bad:
            raise DivergenceError(
                f"parameters diverged at iteration {self.iteration}: rank(s) {bad} differ from rank 0 "
                f"(world size {len(digests)})"
            )

    def evaluate(self) -> dict[str, float]:
        """The task's evaluation of θ, its units (e.g. episodes) spread over the ranks."""
        units = list(partition(self.task.eval_units, self.transport.size, self.transport.rank))
        local = np.zeros((0, len(self.task.eval_fields)))
        if units:
            local = self.task.evaluate_units(self.models[0], self.theta, units, self.iteration)
        rows = self.transport.allgather_rows(local, shares(self.task.eval_units, self.transport.size))
        return self.task.summarize(rows)

    def describe(self) -> str:
        return self.task.describe(self.models[0], self.theta)

    def named_params(self) -> dict[str, np.ndarray]:
        return {n: t.cpu().numpy() for n, t in self.spec.unflatten(self.theta).items()}

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint: θ, counters and V2 statistics, exactly as saved."""
        params = ckpt.members[self.member].params
        if list(params) != list(self.spec.names):
            raise CheckpointError(f"checkpoint parameters {list(params)} do not fit this model {list(self.spec.names)}")
        flat = np.concatenate([np.asarray(params[n], dtype=np.float32).reshape(-1) for n in self.spec.names])
        if flat.size != self.spec.size:
            raise CheckpointError(f"checkpoint has {flat.size} parameters, this model {self.spec.size}")
        self.theta = torch.from_numpy(flat).to(self.primary)
        self.iteration = ckpt.iteration
        self.total_episodes = ckpt.total_episodes
        self.total_samples = ckpt.total_samples
        self.skipped_steps = ckpt.skipped_steps
        if self.obs_stat is not None:
            if ckpt.obs_stat is None:
                raise CheckpointError("checkpoint has no V2 observation statistics")
            self.obs_stat = ckpt.obs_stat
            self._set_normaliser()
