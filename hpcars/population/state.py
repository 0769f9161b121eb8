"""The population's state: every member's parameters and search state, on every rank.

Everything here is a function of the run seed and the gathered rewards, so every
rank holds an identical copy (the trainer's checksum guard covers ``theta``). The
tensors are updated in place row by row — the operators themselves are pure
functions in their own modules. ``arrays()`` / ``from_arrays`` convert to and from
the ``/population`` group of a checkpoint (``docs/checkpoint-format.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class PopulationState:
    theta: torch.Tensor  # [M, P] float32, every member's parameters
    step_size: np.ndarray  # [M] float64, each member's α
    noise_std: np.ndarray  # [M] float64, each member's ν
    fitness: np.ndarray  # [M] float64, latest fitness measurement (NaN before the first)
    parent: np.ndarray  # [M] int64, the member it was last cloned from (-1: never)
    born: np.ndarray  # [M] int64, iteration its current lineage started (0, or its cloning)
    lineage: np.ndarray  # [K, 3] int64 rows (iteration, child, parent), every cloning so far
    accepted: np.ndarray  # [M] int64, annealing: steps judged and kept
    rejected: np.ndarray  # [M] int64, annealing: steps judged and reverted
    # simulated annealing (None when off): θ before the pending step, and the judge's latest score of it
    anchor: torch.Tensor | None = None
    anchor_fitness: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # particle swarm (None when off)
    velocity: torch.Tensor | None = None
    personal_best: torch.Tensor | None = None
    personal_best_fitness: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def start(
        cls, theta0: torch.Tensor, members: int, step_size: float, noise_std: float, annealing: bool, swarm: bool
    ) -> PopulationState:
        """M copies of the initial parameters ``theta0`` [P]."""
        theta = theta0.reshape(1, -1).repeat(members, 1)
        nan = np.full(members, np.nan)
        state = cls(
            theta=theta,
            step_size=np.full(members, float(step_size)),
            noise_std=np.full(members, float(noise_std)),
            fitness=nan.copy(),
            parent=np.full(members, -1, dtype=np.int64),
            born=np.zeros(members, dtype=np.int64),
            lineage=np.zeros((0, 3), dtype=np.int64),
            accepted=np.zeros(members, dtype=np.int64),
            rejected=np.zeros(members, dtype=np.int64),
        )
        if annealing:
            state.anchor = theta.clone()
            state.anchor_fitness = nan.copy()
            state.pending = np.zeros(members, dtype=bool)
        if swarm:
            state.velocity = torch.zeros_like(theta)
            state.personal_best = theta.clone()
            state.personal_best_fitness = nan.copy()
        return state

    @property
    def members(self) -> int:
        return self.theta.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything but ``theta`` (stored per member) as named arrays for the checkpoint."""
        out = {
            "step_size": self.step_size,
            "noise_std": self.noise_std,
            "fitness": self.fitness,
            "parent": self.parent,
            "born": self.born,
            "lineage": self.lineage,
            "accepted": self.accepted,
            "rejected": self.rejected,
        }
        if self.anchor is not None:
            out.update(anchor=self.anchor.cpu().numpy(), anchor_fitness=self.anchor_fitness, pending=self.pending)
        if self.velocity is not None:
            assert self.personal_best is not None  # set together with the velocity
            out.update(
                velocity=self.velocity.cpu().numpy(),
                personal_best=self.personal_best.cpu().numpy(),
                personal_best_fitness=self.personal_best_fitness,
            )
        return {k: np.array(v) for k, v in out.items()}

    @classmethod
    def from_arrays(
        cls, theta: torch.Tensor, arrays: dict[str, np.ndarray], annealing: bool, swarm: bool
    ) -> PopulationState:
        """Rebuild the state a checkpoint saved (``theta`` [M, P] already on its device)."""
        missing = [
            name for name, needed in (("anchor", annealing), ("velocity", swarm)) if needed and name not in arrays
        ]
        if missing:
            raise KeyError(f"population state lacks {missing}")

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(np.array(arrays[name], dtype=np.float32)).to(theta.device)

        state = cls(
            theta=theta,
            step_size=arrays["step_size"].astype(np.float64),
            noise_std=arrays["noise_std"].astype(np.float64),
            fitness=arrays["fitness"].astype(np.float64),
            parent=arrays["parent"].astype(np.int64),
            born=arrays["born"].astype(np.int64),
            lineage=arrays["lineage"].astype(np.int64).reshape(-1, 3),
            accepted=arrays["accepted"].astype(np.int64),
            rejected=arrays["rejected"].astype(np.int64),
        )
        if annealing:
            state.anchor = tensor("anchor")
            state.anchor_fitness = arrays["anchor_fitness"].astype(np.float64)
            state.pending = arrays["pending"].astype(bool)
        if swarm:
            state.velocity = tensor("velocity")
            state.personal_best = tensor("personal_best")
            state.personal_best_fitness = arrays["personal_best_fitness"].astype(np.float64)
        return state
