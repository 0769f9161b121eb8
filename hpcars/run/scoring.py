"""Scoring branches: which parameters a branch is, and its reward, in calls of a fixed width.

Branches are numbered globally: branch g belongs to member g // per_member; within a member,
2k is θ_m + ν_m δ_k and 2k + 1 is θ_m − ν_m δ_k, and annealing's judge rows (the member's old
and current θ) follow (``population.judge``). ``score_branches`` cuts a rank's branches into
calls of exactly ``call_width`` rows — a short call padded with copies of its last branch, so a
branch is computed by the same kernels whatever share of the branches its rank holds — hands
each call's parameters to the task (dense: the searched vectors mapped by the search space; low
rank: branches on shared weights) and encodes the outcome as message rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from hpcars.algorithm.branches import BatchedModel
from hpcars.algorithm.perturbation import LowRankBranches, Perturbation
from hpcars.algorithm.spaces import SearchSpace
from hpcars.population.judge import OLD, PERTURBED, BranchLayout
from hpcars.population.state import PopulationState
from hpcars.runtime.messages import Schema, encode_branches
from hpcars.tasks.base import Task

#: what ``branch_params`` gives the task: a dense stack, or low-rank branches on shared weights
Branches = torch.Tensor | LowRankBranches


def call_width(branch_batch: int, branches: int) -> int:
    """Branches per batched call: ``--branch-batch``, or fewer when an iteration has fewer branches —
    the smallest power of two that holds them all. The same on every rank whatever its share (a
    short call is padded), so a branch is computed by the same kernels at any world size: a
    matrix product's row can change its last bits with the number of rows in the call (on an
    AMD EPYC with MKL, calls of 1-3 rows round row 0 differently from wider ones) and with its
    position in a call whose width is not a power of two (6 and 48 do, 1-64 in powers of two
    do not, measured with ``tests/test_world_size.py``'s check)."""
    return min(branch_batch, 1 << max(0, (branches - 1).bit_length()))


class Scoring(Protocol):
    """What scoring reads of a trainer (``hpcars.run.engine.ARSTrainer``)."""

    layout: BranchLayout
    perturbation: Perturbation
    space: SearchSpace
    task: Task
    schema: Schema
    width: int
    per_member: int

    @property
    def state(self) -> PopulationState: ...

    def directions(
        self, iteration: int, member: int, indices: Sequence[int], device: torch.device, entries: slice | None = None
    ) -> torch.Tensor: ...


def branch_params(trainer: Scoring, branches: list[int], device: torch.device, iteration: int) -> Branches:
    """The branches of global ids ``branches`` as the perturbation kind hands them to the model
    (dense: the searched vectors [len, d]): θ_m ± ν_m δ_k for a perturbed branch, the anchor or
    the current θ_m for a judge row (``population.judge``). Each direction is drawn once, for
    both of its signs."""
    layout, members = trainer.layout, trainer.state.members
    member = np.array([layout.member(g) for g in branches])
    kind = np.array([layout.kind(g) for g in branches])
    bases, owner = trainer.state.theta.to(device), member.copy()
    old = np.flatnonzero(kind == OLD)
    if old.size:
        assert trainer.state.anchor is not None  # judge rows exist only with annealing, which keeps anchors
        bases = torch.cat((bases, trainer.state.anchor.to(device)))
        owner[old] += members
    scale = torch.zeros(len(branches), dtype=torch.float32, device=device)
    which = np.zeros(len(branches), dtype=np.int64)  # judge rows (scale 0) point at any finite row
    drawn: list[torch.Tensor] = []
    perturbed = np.flatnonzero(kind == PERTURBED)
    noise_std = torch.as_tensor(trainer.state.noise_std, dtype=torch.float32, device=device)
    direction = np.array([(g % trainer.per_member) // 2 for g in branches])
    for m in np.unique(member[perturbed]):
        rows = perturbed[member[perturbed] == m]
        unique, inverse = np.unique(direction[rows], return_inverse=True)
        which[rows] = sum(int(d.shape[0]) for d in drawn) + inverse
        drawn.append(trainer.directions(iteration, int(m), unique.tolist(), device))
        signs = torch.tensor([1.0 if branches[r] % 2 == 0 else -1.0 for r in rows], device=device)
        scale[torch.as_tensor(rows, device=device)] = noise_std[int(m)] * signs
    size = trainer.perturbation.noise_size
    if not drawn:  # judge rows only
        drawn = [torch.zeros(1, size, dtype=torch.float32, device=device)]
    directions = drawn[0] if len(drawn) == 1 else torch.cat(drawn)  # no copy for one member
    at = torch.as_tensor(owner, device=device)
    return trainer.perturbation.branches(bases, at, scale, directions, torch.as_tensor(which, device=device))


# -- one iteration ----------------------------------------------------------------
def score_branches(trainer: Scoring, model: BatchedModel, branches: list[int], iteration: int) -> np.ndarray:
    """Message rows (``trainer.schema``) for ``branches`` of ``iteration`` (the noise and
    data key) at the current parameters, in fixed-size batched calls of ``trainer.width``."""
    if not branches:
        return np.zeros((0, trainer.schema.width))
    context = trainer.task.begin_iteration(iteration, 0, model.device)
    width = trainer.width
    rows = []
    for start in range(0, len(branches), width):
        chunk = branches[start : start + width]
        padded = chunk + [chunk[-1]] * (width - len(chunk))
        stack = branch_params(trainer, padded, model.device, iteration)
        params = trainer.space.to_params(stack) if isinstance(stack, torch.Tensor) else stack  # low rank: full space
        outcome = trainer.task.rewards(model, params, context, trainer.layout.episode_ids(chunk))
        rows.append(encode_branches(trainer.schema, outcome))
    return np.concatenate(rows)
