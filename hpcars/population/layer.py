"""One population iteration: the operators of this package applied in a fixed order.

``Population.advance`` is called by the trainer with the gathered rewards of all
members and a function that forms a member's ARS step; it runs the order listed in
``hpcars.population`` (annealing, ARS step, swarm, repulsion, truncation) and
returns what happened for the metrics. Every rank calls it with the same inputs and
so makes the same changes — nothing here communicates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hpcars.algorithm.ars import ARSStep
from hpcars.algorithm.update import apply
from hpcars.population import agreed
from hpcars.population.annealing import AnnealingParams, accept, reward_scale, temperature
from hpcars.population.judge import judged_worsening
from hpcars.population.repulsion import RepulsionParams, repel, tabu_radius
from hpcars.population.state import PopulationState
from hpcars.population.swarm import SwarmParams, velocity
from hpcars.population.truncation import TruncationParams, plan, rank


@dataclass(frozen=True)
class PopulationParams:
    members: int
    truncation: TruncationParams
    annealing: AnnealingParams
    swarm: SwarmParams
    repulsion: RepulsionParams


@dataclass(frozen=True)
class PopulationRecord:
    """What one iteration did to the population (the population columns of the metrics)."""

    best_member: int
    fitness_best: float
    fitness_median: float
    temperature: float  # NaN without annealing
    sa_judged: int  # annealing: steps judged this iteration
    sa_accepted: int  # ... of which kept (improving or accepted worsening)
    clones: int  # members replaced by truncation this iteration
    repelled: int  # members pushed out of the ball around the best
    repel_radius: float  # its radius R (NaN without repulsion)
    update_norm: float  # mean ‖θ_new − θ_old‖ of the moves applied: the ARS step, or with the swarm v

    def columns(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in COLUMNS}


COLUMNS = tuple(f.name for f in dataclasses.fields(PopulationRecord) if f.name != "update_norm")

#: (member, its ARS step) -> Δθ as a float64 tensor [P] on the state's device
StepFn = Callable[[int, ARSStep], torch.Tensor]


def best_member(fitness: np.ndarray) -> int:
    return int(rank(fitness)[0])


class Population:
    def __init__(self, params: PopulationParams, seed: int, state: PopulationState, origin: torch.Tensor) -> None:
        self.params = params
        self.seed = seed
        self.state = state
        self.origin = origin  # θ_0 (float32), where every member started

    def advance(
        self,
        iteration: int,
        rewards: np.ndarray,
        steps: Sequence[ARSStep],
        step_fn: StepFn,
        judge: np.ndarray | None = None,
        ranked: np.ndarray | None = None,
    ) -> PopulationRecord:
        """Iteration ``iteration`` given every member's rewards [M, 2N] and ARS steps, with
        annealing the judge pairs [M, J, 2] (old, new) of ``population.judge``, and with
        ``--rank-by return`` what members are ranked on instead of their rewards [M, 2N]."""
        p, s = self.params, self.state
        scored = rewards if ranked is None else ranked  # what members are ranked on (``--rank-by``)
        measured = np.where(np.isfinite(scored).all(axis=1), scored.mean(axis=1), np.nan)
        # 1. annealing: judge last iteration's steps, old and new θ on common random numbers
        keep, temp, judged, kept = np.ones(s.members, dtype=bool), float("nan"), 0, 0
        if p.annealing.enabled:
            keep, temp, judged, kept = self._anneal(iteration, rewards, steps, judge, measured)
        s.fitness = measured
        # 2-4. ARS step, swarm velocity, move
        norms = self._move(iteration, keep, steps, step_fn, measured)
        # 5. repulsion from the population best
        repelled, radius = self._repel(best_member(measured)) if p.repulsion.enabled else (0, float("nan"))
        # 6. truncation at the end of a generation
        clones = 0
        if p.truncation.enabled and (iteration + 1) % p.truncation.every == 0:
            u = agreed.member_uniforms(self.seed, agreed.TRUNCATION, iteration, s.members, 3)
            clones = self._clone(plan(s.fitness, p.truncation, u), iteration + 1)
        finite = s.fitness[np.isfinite(s.fitness)]
        return PopulationRecord(
            best_member=best_member(s.fitness),
            fitness_best=float(finite.max()) if finite.size else float("nan"),
            fitness_median=float(np.median(finite)) if finite.size else float("nan"),
            temperature=temp,
            sa_judged=judged,
            sa_accepted=kept,
            clones=clones,
            repelled=repelled,
            repel_radius=radius,
            update_norm=float(np.mean(norms)) if norms else 0.0,
        )

    def restart(self, start: torch.Tensor, step_size: float, noise_std: float, iteration: int) -> None:
        """Every member starts over at ``start`` [P] (``hpcars.population.restart``): the search state
        of iteration 0 (α, ν, annealing's anchors, the swarm's velocities and bests), every member
        born at ``iteration``, the lineage table kept."""
        p, old = self.params, self.state
        theta = start.to(old.theta)
        self.state = PopulationState.start(
            theta, old.members, step_size, noise_std, p.annealing.enabled, p.swarm.enabled
        )
        self.state.lineage = old.lineage
        self.state.born[:] = iteration

    def _anneal(
        self,
        iteration: int,
        rewards: np.ndarray,
        steps: Sequence[ARSStep],
        judge: np.ndarray | None,
        measured: np.ndarray,
    ) -> tuple[np.ndarray, float, int, int]:
        """Keep or revert each member's last step (simulated annealing); (kept, T, judged, accepted).
        A reverted member's fitness becomes the judge's score of where it went back to."""
        p, s = self.params, self.state
        assert judge is not None and s.anchor is not None  # annealing always judges and keeps an anchor
        temp = temperature(p.annealing, iteration)
        scale = np.array([reward_scale(r) for r in rewards])
        worsening = np.where(s.pending, judged_worsening(judge, scale), -np.inf)
        u = agreed.member_uniforms(self.seed, agreed.ANNEALING, iteration, s.members, 1)[:, 0]
        ok = accept(worsening, temp, u)
        judged, kept = int(s.pending.sum()), int((s.pending & ok).sum())
        keep = ~s.pending | ok
        s.accepted += s.pending & ok
        s.rejected += s.pending & ~ok
        kept_rows, back_rows = (torch.as_tensor(m, device=s.theta.device) for m in (keep, ~keep))
        s.anchor[kept_rows] = s.theta[kept_rows]  # kept: the current point is the next step's reference
        s.theta[back_rows] = s.anchor[back_rows]  # rejected: back to where the member was; its step is dropped
        # the judge's score of where the member now is: θ' if kept, θ if reverted
        s.anchor_fitness = np.where(keep, judge[:, :, 1].mean(axis=1), judge[:, :, 0].mean(axis=1))
        measured[~keep] = s.anchor_fitness[~keep]
        if s.velocity is not None:
            s.velocity[back_rows] = 0.0
        s.pending = keep & np.array([not st.skipped for st in steps])
        return keep, temp, judged, kept

    def _move(
        self, iteration: int, keep: np.ndarray, steps: Sequence[ARSStep], step_fn: StepFn, measured: np.ndarray
    ) -> list[float]:
        """Each kept member's ARS step — through the swarm's velocity with ``--swarm`` — applied to
        its θ; the norms of the moves."""
        p, s = self.params, self.state
        if p.swarm.enabled:
            assert s.personal_best is not None  # the swarm keeps personal bests
            better = np.isfinite(measured) & ~(measured <= s.personal_best_fitness)  # NaN best counts as worse
            rows = torch.as_tensor(better, device=s.theta.device)
            s.personal_best[rows] = s.theta[rows]
            s.personal_best_fitness[better] = measured[better]
            global_best = s.personal_best[best_member(s.personal_best_fitness)].to(torch.float64)
            r = agreed.member_uniforms(self.seed, agreed.SWARM, iteration, s.members, 2)
        norms = []
        for m in map(int, np.flatnonzero(keep)):
            step = step_fn(m, steps[m])
            if p.swarm.enabled:
                assert s.velocity is not None and s.personal_best is not None  # the swarm's state
                v = velocity(
                    p.swarm,
                    s.velocity[m].to(torch.float64),
                    step,
                    s.theta[m].to(torch.float64),
                    s.personal_best[m].to(torch.float64),
                    global_best,
                    r[m, 0],
                    r[m, 1],
                )
                s.velocity[m] = v.to(torch.float32)
                step = v
            norms.append(float(step.norm()))
            apply(s.theta[m], step)
        return norms

    def _repel(self, best: int) -> tuple[int, float]:
        """Push every other member out of the ball around the best (tabu-like); (pushed, radius)."""
        s, anchor = self.state, self.state.theta[best].to(torch.float64)
        radius = tabu_radius(self.params.repulsion, anchor, self.origin.to(anchor.device, torch.float64))
        repelled = 0
        for m in range(s.members):
            if m != best:
                moved, pushed = repel(self.params.repulsion, s.theta[m].to(torch.float64), anchor, radius)
                if pushed:
                    s.theta[m] = moved.to(torch.float32)
                    repelled += 1
        return repelled, radius

    def _clone(self, generation, born: int) -> int:
        s = self.state
        for child, parent, fa, fn in zip(
            generation.children, generation.parents, generation.step_factor, generation.noise_factor, strict=True
        ):
            s.theta[child] = s.theta[parent]
            s.step_size[child] = s.step_size[parent] * fa
            s.noise_std[child] = s.noise_std[parent] * fn
            s.fitness[child] = s.fitness[parent]
            s.parent[child] = parent
            s.born[child] = born
            if s.anchor is not None:  # nothing to judge yet: its next measurement is its reference
                s.anchor[child] = s.theta[parent]
                s.anchor_fitness[child] = np.nan
                s.pending[child] = False
            if s.velocity is not None:
                s.velocity[child] = 0.0
                assert s.personal_best is not None  # set together with the velocity
                s.personal_best[child] = s.personal_best[parent]
                s.personal_best_fitness[child] = s.personal_best_fitness[parent]
        events = np.stack([np.full(len(generation.children), born), generation.children, generation.parents], axis=1)
        s.lineage = np.concatenate([s.lineage, events.astype(np.int64)])
        return len(generation.children)
