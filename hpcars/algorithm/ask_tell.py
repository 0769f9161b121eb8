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
import math
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
        self.params = _checked(num_params, directions, top_directions, step_size, noise_std, seed, branch_batch)
        num_params = self.params.num_params
        self.device = torch.device(device)
        self._numpy = init is None or not isinstance(init, torch.Tensor)
        try:
            theta = (
                torch.zeros(num_params) if init is None else torch.as_tensor(np.asarray(init) if self._numpy else init)
            )
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError("init", f"must be num_params={num_params} numbers ({err})") from None
        theta = theta.detach().to(self.device, torch.float32).reshape(-1).clone()
        if theta.numel() != num_params:
            raise ConfigError("init", f"must hold num_params={num_params} values (got {theta.numel()})")
        if not bool(torch.isfinite(theta).all()):
            raise ConfigError("init", "must hold finite values (got NaN or infinity)")
        self._theta = theta
        self.iteration = 0
        self._noise = NoiseSource(self.params.seed)

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
        try:
            r = np.asarray(rewards.detach().cpu() if isinstance(rewards, torch.Tensor) else rewards, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ConfigError("rewards", f"must be {2 * p.directions} numbers ({err})") from None
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
        """Continue from ``state_dict()``'s output; refused if the settings differ or anything is missing."""
        missing = [key for key in ("theta", "iteration", "params") if key not in state]
        if missing:
            raise ConfigError("state", f"lacks {', '.join(missing)} (expected what state_dict() returns)")
        mine = dataclasses.asdict(self.params)
        saved = state["params"]
        absent = sorted(set(mine) - set(saved))
        if absent:
            raise ConfigError("state", f"params lack {', '.join(absent)} (expected what state_dict() returns)")
        changed = [k for k, v in saved.items() if mine.get(k) != v]
        if changed:
            raise ConfigError("state", f"made with other settings: {', '.join(sorted(changed))}")
        theta = torch.as_tensor(state["theta"]).reshape(-1)
        if theta.numel() != self.params.num_params:
            raise ConfigError("state", f"theta holds {theta.numel()} values, expected num_params={mine['num_params']}")
        iteration = state["iteration"]
        if not _integral(iteration) or iteration < 0:
            raise ConfigError("state", f"iteration must be an integer >= 0 (got {iteration!r})")
        self._theta = theta.to(self.device, torch.float32).clone()
        self.iteration = int(iteration)

    def _directions(self, indices: list[int]) -> torch.Tensor:
        return self._noise.directions(self.iteration, 0, indices, self.params.num_params, device=self.device)


def _integral(value: Any) -> bool:
    """An integer of Python or NumPy (not a bool, not a float that happens to be whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _checked(
    num_params: Any,
    directions: Any,
    top_directions: Any,
    step_size: Any,
    noise_std: Any,
    seed: Any,
    branch_batch: Any,
) -> ARSParams:
    """The settings as plain Python numbers, or ``ConfigError`` naming the first bad one."""
    counts = {"num_params": num_params, "directions": directions, "branch_batch": branch_batch}
    for name, value in counts.items():
        if not (_integral(value) and value >= 1):
            raise ConfigError(name, f"must be an integer >= 1 (got {value!r})")
    if not (_integral(top_directions) and 0 <= top_directions <= directions):
        raise ConfigError(
            "top_directions", f"must be an integer in [0, directions={directions}] (got {top_directions!r})"
        )
    for name, value in (("step_size", step_size), ("noise_std", noise_std)):
        if not (_real(value) and math.isfinite(value) and value > 0):
            raise ConfigError(name, f"must be a finite number > 0 (got {value!r})")
    if not (_integral(seed) and 0 <= seed < 2**63):
        raise ConfigError("seed", f"must be an integer in [0, 2**63) (got {seed!r})")
    return ARSParams(
        int(num_params),
        int(directions),
        int(top_directions),
        float(step_size),
        float(noise_std),
        int(seed),
        int(branch_batch),
    )
