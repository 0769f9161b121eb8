"""``hpcars.ARS``: ask for the perturbed vectors, evaluate them anywhere, tell the rewards.

Augmented Random Search (Mania, Guy & Recht 2018, arXiv 1803.07055) as a strategy
object, for users who score parameter vectors outside hpcars — their own simulator,
a robot, a service::

    ars = hpcars.ARS(num_params=12, directions=6, top_directions=6, step_size=0.05, noise_std=0.05, seed=5)
    for _ in range(100):
        thetas = ars.ask()                          # [2N, P]
        ars.tell([my_reward(t) for t in thetas])    # one reward per row, in that order
    ars.theta

Row ``2k`` is θ + νδ_k and row ``2k + 1`` is θ − νδ_k, δ_k regenerated from (seed,
iteration, k) by ``hpcars.algorithm.noise``; ``tell`` applies ``ars_step`` (exactly b
directions kept, σ_R over their 2b rewards) and forms Σ w_k δ_k in float64 in chunks of
``branch_batch`` directions — the engine's noise, rule and arithmetic, so a run driven
by ask/tell ends with the engine's bits (``tests/test_ask_tell.py``). It is plain V1:
no input normalisation, one learner.

On several ranks every rank builds the same ``ARS``; ``ask(rank, world)`` returns only
that rank's contiguous rows (``share(rank, world)``), and ``tell`` wants all 2N rewards
(gather them, e.g. with ``mpi4py``'s ``allgather``), after which every rank holds the
same θ. Arrays or tensors: ``ask`` and ``theta`` return what ``init`` was (a NumPy
array when none was given); ``tell`` takes either.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hpcars.algorithm.ars import ARSHyper, ARSStep, ars_step
from hpcars.algorithm.noise import NoiseSource
from hpcars.errors import ConfigError


@dataclass(frozen=True)
class ARSParams:
    """The strategy's fixed settings (the command line's names)."""

    num_params: int
    directions: int = 32
    top_directions: int = 0  # 0 = all N
    step_size: float = 0.02
    noise_std: float = 0.03
    seed: int = 0
    branch_batch: int = 64  # directions summed per chunk of the update: part of its bits

    @property
    def top(self) -> int:
        return self.top_directions or self.directions


class ARS:
    """Ask/tell ARS over a flat float32 parameter vector (see the module's text)."""

    def __init__(
        self,
        num_params: int,
        directions: int = 32,
        top_directions: int = 0,
        step_size: float = 0.02,
        noise_std: float = 0.03,
        seed: int = 0,
        init: Any = None,
        branch_batch: int = 64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.params = ARSParams(num_params, directions, top_directions, step_size, noise_std, seed, branch_batch)
        _check(self.params)
        self.device = torch.device(device)
        self._numpy = init is None or not isinstance(init, torch.Tensor)
        theta = torch.zeros(num_params) if init is None else torch.as_tensor(np.asarray(init) if self._numpy else init)
        theta = theta.detach().to(self.device, torch.float32).reshape(-1).clone()
        if theta.numel() != num_params:
            raise ConfigError("init", f"must hold num_params={num_params} values (got {theta.numel()})")
        self._theta = theta
        self.iteration = 0
        self._noise = NoiseSource(seed)

    # -- the two calls ------------------------------------------------------------------
    def share(self, rank: int = 0, world: int = 1) -> range:
        """The rows of ``ask`` that rank ``rank`` of ``world`` evaluates (contiguous, whole pairs)."""
        n = self.params.directions
        return range(2 * (n * rank // world), 2 * (n * (rank + 1) // world))

    def ask(self, rank: int = 0, world: int = 1) -> Any:
        """The perturbed vectors of this iteration: all 2N rows, or rank ``rank``'s share."""
        rows = self.share(rank, world)
        first, last = rows.start // 2, rows.stop // 2
        delta = self._directions(list(range(first, last)))  # [n, P] float32
        nu = torch.tensor(self.params.noise_std, dtype=torch.float32, device=self.device)
        signs = torch.tensor([1.0, -1.0], device=self.device).repeat(last - first)
        stack = self._theta.expand(len(rows), -1) + (nu * signs)[:, None] * delta.repeat_interleave(2, dim=0)
        return stack.cpu().numpy() if self._numpy else stack

    def tell(self, rewards: Any) -> ARSStep:
        """Apply the update for all 2N rewards (in ``ask``'s order); returns the step taken
        (``step.skipped`` names why θ did not move: a non-finite reward, or σ_R = 0)."""
        p = self.params
        r = np.asarray(rewards.detach().cpu() if isinstance(rewards, torch.Tensor) else rewards, dtype=np.float64)
        if r.shape != (2 * p.directions,):
            raise ConfigError("rewards", f"expected {2 * p.directions} (2N) rewards, got shape {r.shape}")
        step = ars_step(r[0::2], r[1::2], ARSHyper(p.step_size, p.noise_std, p.directions, p.top))
        total = torch.zeros(p.num_params, dtype=torch.float64, device=self.device)
        for start in range(0, len(step.kept), p.branch_batch):
            kept = step.kept[start : start + p.branch_batch].tolist()
            weights = torch.as_tensor(step.weights[start : start + p.branch_batch], device=self.device)
            total += weights @ self._directions(kept).to(torch.float64)
        self._theta = (self._theta.to(torch.float64) + total).to(torch.float32)
        self.iteration += 1
        return step

    # -- state --------------------------------------------------------------------------
    @property
    def theta(self) -> Any:
        """The current parameters [P] (a copy)."""
        return self._theta.cpu().numpy().copy() if self._numpy else self._theta.clone()

    def state_dict(self) -> dict[str, Any]:
        """Everything the next ``ask`` depends on: θ, the iteration and the settings."""
        return {
            "theta": self._theta.cpu().clone(),
            "iteration": self.iteration,
            "params": dataclasses.asdict(self.params),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output; refused if the settings differ."""
        mine = dataclasses.asdict(self.params)
        changed = [k for k, v in state["params"].items() if mine.get(k) != v]
        if changed:
            raise ConfigError("state", f"made with other settings: {', '.join(sorted(changed))}")
        self._theta = torch.as_tensor(state["theta"]).to(self.device, torch.float32).clone()
        self.iteration = int(state["iteration"])

    def _directions(self, indices: list[int]) -> torch.Tensor:
        return self._noise.directions(self.iteration, 0, indices, self.params.num_params, device=self.device)


def _check(p: ARSParams) -> None:
    for name in ("num_params", "directions", "branch_batch"):
        if not (isinstance(getattr(p, name), int) and getattr(p, name) >= 1):
            raise ConfigError(name, f"must be an integer >= 1 (got {getattr(p, name)!r})")
    if not 0 <= p.top_directions <= p.directions:
        raise ConfigError("top_directions", f"must be in [0, directions={p.directions}] (got {p.top_directions})")
    for name in ("step_size", "noise_std"):
        if not getattr(p, name) > 0:
            raise ConfigError(name, f"must be > 0 (got {getattr(p, name)!r})")
