"""One ARS learner spread over the ranks of a transport.

Per iteration j every rank:

1. takes its contiguous share of the 2N branches (branch 2k is θ + νδ_k, branch
   2k + 1 is θ − νδ_k), regenerates the directions it needs from the common seed,
   and scores them with the task in batched calls of exactly ``branch_batch``
   branches (a short last call is padded), so a branch's reward is computed by the
   same kernels whatever the world size;
2. all-gathers one row per branch (``comm.BRANCH_FIELDS``: reward, samples) — the
   iteration's only message, 2N × 16 bytes;
3. computes the same ARS step from the same rewards (``ars.ars_step``), regenerates
   the kept directions and applies θ += Σ w_k δ_k in float64 in a fixed order, so
   all ranks hold bitwise identical θ without ever sending it;
4. (V2) folds this iteration's training inputs into the running input statistics,
   which become the normaliser of the next iteration.

Every ``guard_every`` iterations the ranks compare SHA-256 checksums of θ and raise
``DivergenceError`` on a mismatch.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from hpcars.ars import SKIP_NONFINITE, ARSHyper, ARSStep, ars_step
from hpcars.branches import BatchedModel, ParamSpec
from hpcars.comm import BRANCH_FIELDS, Transport, partition, shares
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
    rollout_s: float
    comm_s: float
    update_s: float
    comm_bytes: int
    eval: dict[str, float] = field(default_factory=dict)


def params_sha256(theta: torch.Tensor) -> str:
    """SHA-256 of θ as little-endian float32 bytes in ``ParamSpec`` order."""
    data = theta.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return hashlib.sha256(data.tobytes()).hexdigest()


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
        """Rows (reward, samples) for ``branches``, in fixed-size batched calls."""
        if not branches:
            return np.zeros((0, len(BRANCH_FIELDS)))
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
            outcome = self.task.rewards(model, stack, context)
            rows.append(torch.stack((outcome.rewards, outcome.samples), dim=1)[: len(chunk)].cpu().numpy())
        return np.concatenate(rows).astype(np.float64)

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

    def _refresh_normaliser(self) -> None:
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
            context = self.task.begin_iteration(self.iteration, self.member, torch.device("cpu"))
            inputs = self.task.training_inputs(context).double().numpy()
            self.obs_stat = self.obs_stat.merge(RunningStat.of(inputs))
            self._refresh_normaliser()
        t3 = time.perf_counter()

        self.iteration += 1
        batch_samples = int(samples.sum())
        self.total_samples += batch_samples
        finite = rewards[np.isfinite(rewards)]
        return IterationRecord(
            iteration=self.iteration,
            reward_mean=float(finite.mean()) if finite.size else float("nan"),
            reward_max=float(finite.max()) if finite.size else float("nan"),
            sigma_r=step.sigma_r,
            skipped=step.skipped,
            update_norm=update_norm,
            samples=batch_samples,
            total_samples=self.total_samples,
            rollout_s=t1 - t0,
            comm_s=t2 - t1,
            update_s=t3 - t2,
            comm_bytes=comm_bytes,
        )

    # -- checks and results -----------------------------------------------------------
    def params_sha256(self) -> str:
        return params_sha256(self.theta)

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
        return self.task.evaluate(self.models[0], self.theta)

    def describe(self) -> str:
        return self.task.describe(self.models[0], self.theta)

    def named_params(self) -> dict[str, np.ndarray]:
        return {n: t.cpu().numpy() for n, t in self.spec.unflatten(self.theta).items()}
