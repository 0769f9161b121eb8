"""``hpcars.ARS``: ask for the perturbed branches, evaluate them anywhere, tell the rewards.

Augmented Random Search (Mania, Guy & Recht 2018, arXiv 1803.07055) as a strategy object, for
users who score parameters outside hpcars — their own simulator, a robot, a service::

    ars = hpcars.ARS(num_params=12, directions=6, top_directions=6, step_size=0.05, noise_std=0.05, seed=5)
    for _ in range(100):
        thetas = ars.ask()                          # [2N, P]
        ars.tell([my_reward(t) for t in thetas])    # one reward per row, in that order
    ars.theta

Row ``2k`` is θ + νδ_k and row ``2k + 1`` is θ − νδ_k, δ_k regenerated from (seed, iteration,
k) by ``hpcars.algorithm.noise``. ``tell`` is the engine's own path (``hpcars.algorithm.update``):
the rewards become a step by ``fitness`` (``ars``: exactly b directions kept, σ_R over their 2b
rewards; ``zscore``; ``group-zscore`` with ``tell(rewards, groups=...)``), Σ w_k δ_k is formed in
chunks of ``branch_batch`` directions, and θ moves in float64 — so a run driven by ask/tell
ends with the engine's bits (``tests/test_ask_tell.py``).

What else the engine has, where it fits ask/tell:

* ``module=`` and ``perturbation="lowrank"`` (``rank=R``): θ is the module's parameters, and
  ``ask`` returns the branches as ``LowRankBranches`` — the module's weights shared, a rank-R
  product per weight matrix per branch — which ``hpcars.algorithm.branches.BatchedModel(module)``
  evaluates in one batched call (or ``.dense()`` builds in full). ``hpcars.check_perturbation``
  says whether that is exact on your model.
* ``normalize=d`` (V2): running statistics of the d-wide inputs the branches were fed, which
  ``tell(rewards, inputs=...)`` merges after the step; ``normaliser`` is (mean, 1/std) to feed the
  next iteration's inputs through, as the engine's V2 models do.

On several ranks every rank builds the same ``ARS``; ``ask(rank, world)`` returns only that
rank's contiguous rows (``share(rank, world)``), and ``tell`` wants all 2N rewards (gather them,
e.g. with ``mpi4py``'s ``allgather``), after which every rank holds the same θ. Arrays or
tensors: ``ask`` and ``theta`` return what ``init`` was (a NumPy array when none was given; a
tensor with a ``module``); ``tell`` takes either.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hpcars.algorithm import update
from hpcars.algorithm.ars import ARSStep
from hpcars.algorithm.branches import ParamSpec
from hpcars.algorithm.fitness import FITNESS
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import Dense, LowRank, Perturbation, make_perturbation
from hpcars.algorithm.runningstat import RunningStat
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
    fitness: str = "ars"
    perturbation: str = "dense"
    rank: int = 1
    normalize: int = 0  # V2: the inputs' width (0: V1)

    @property
    def top(self) -> int:
        return self.top_directions or self.directions


class ARS:
    """Ask/tell ARS over a flat float32 parameter vector, or a module's parameters (see the module's text)."""

    def __init__(
        self,
        num_params: int | None = None,
        directions: int = 32,
        top_directions: int = 0,
        step_size: float = 0.02,
        noise_std: float = 0.03,
        seed: int = 0,
        init: Any = None,
        branch_batch: int = 64,
        device: torch.device | str = "cpu",
        fitness: str = "ars",
        module: nn.Module | None = None,
        perturbation: str = "dense",
        rank: int = 1,
        normalize: int = 0,
    ) -> None:
        if module is not None and init is None:
            init = ParamSpec.of(module).flatten(module).detach()
        if num_params is None:
            if module is None:
                raise ConfigError("num_params", "is needed without a module (the length of θ)")
            num_params = ParamSpec.of(module).size
        self.params = _checked(
            num_params, directions, top_directions, step_size, noise_std, seed, branch_batch, fitness, perturbation
        )
        self.params = dataclasses.replace(
            self.params, rank=_count("rank", rank), normalize=_count("normalize", normalize, 0)
        )
        self.device = torch.device(device)
        self.module = module
        self.kind: Perturbation = self._kind(module)
        self.rule = update.StepRule(self.params.directions, self.params.top, self.params.fitness)
        self._numpy = init is None or not isinstance(init, torch.Tensor)
        self._theta = _theta(init, self.params.num_params, self._numpy, self.device)
        self.iteration = 0
        self._noise = NoiseSource(self.params.seed)
        self.inputs = RunningStat.empty(self.params.normalize) if self.params.normalize else None

    def _kind(self, module: nn.Module | None) -> Perturbation:
        p = self.params
        if p.perturbation == "dense":
            return Dense(p.num_params)
        if module is None:
            raise ConfigError("perturbation", "lowrank needs the module= whose weight matrices it perturbs")
        kind = make_perturbation("lowrank", module, p.num_params, p.rank)
        if ParamSpec.of(module).size != p.num_params:
            raise ConfigError("num_params", f"must be the module's {ParamSpec.of(module).size} parameters")
        return kind

    # -- the two calls ------------------------------------------------------------------
    def share(self, rank: int = 0, world: int = 1) -> range:
        """The rows of ``ask`` that rank ``rank`` of ``world`` evaluates (contiguous, whole pairs)."""
        n = self.params.directions
        return range(2 * (n * rank // world), 2 * (n * (rank + 1) // world))

    def ask(self, rank: int = 0, world: int = 1) -> Any:
        """The perturbed branches of this iteration: all 2N rows, or rank ``rank``'s share — a
        [rows, P] stack (dense), or ``LowRankBranches`` on the module's shared weights (low rank)."""
        rows = self.share(rank, world)
        first, last = rows.start // 2, rows.stop // 2
        delta = self._directions(list(range(first, last)))  # [n, noise size] float32
        nu = torch.tensor(self.params.noise_std, dtype=torch.float32, device=self.device)
        signs = torch.tensor([1.0, -1.0], device=self.device).repeat(last - first)
        if isinstance(self.kind, LowRank):
            owner = torch.zeros(len(rows), dtype=torch.long, device=self.device)
            which = torch.arange(len(rows), device=self.device) // 2
            return self.kind.branches(self._theta[None], owner, nu * signs, delta, which)
        stack = self._theta.expand(len(rows), -1) + (nu * signs)[:, None] * delta.repeat_interleave(2, dim=0)
        return stack.cpu().numpy() if self._numpy else stack

    def tell(self, rewards: Any, groups: Any = None, inputs: Any = None) -> ARSStep:
        """Apply the update for all 2N rewards (in ``ask``'s order; ``groups``: each branch's reward
        per prompt [2N, K] for ``group-zscore``; ``inputs``: with ``normalize``, the [n, d] inputs
        the branches were fed). Returns the step taken (``step.skipped`` names why θ did not move:
        a non-finite reward, or rewards all equal)."""
        p = self.params
        r = _floats("rewards", rewards, (2 * p.directions,), f"{2 * p.directions} (2N) rewards")
        per_prompt = None
        if groups is not None:
            per_prompt = _floats("groups", groups, (2 * p.directions, -1), f"[2N, K] = [{2 * p.directions}, K] rewards")
        if p.fitness == "group-zscore" and per_prompt is None:
            raise ConfigError("groups", "group-zscore needs each branch's reward per prompt: tell(rewards, groups=...)")
        step = update.member_step(self.rule, r, p.step_size, p.noise_std, per_prompt)
        delta = update.step_vector(self.kind, step, self._draw, p.branch_batch, self.device)
        update.apply(self._theta, delta)
        if self.inputs is not None and inputs is not None:
            seen = _floats("inputs", inputs, (-1, p.normalize), f"[n, {p.normalize}] inputs")
            self.inputs = self.inputs.merge(RunningStat.of(seen))
        self.iteration += 1
        return step

    # -- state --------------------------------------------------------------------------
    @property
    def theta(self) -> Any:
        """The current parameters [P] (a copy)."""
        return self._theta.cpu().numpy().copy() if self._numpy else self._theta.clone()

    @property
    def normaliser(self) -> tuple[np.ndarray, np.ndarray]:
        """V2: (mean, 1/std) of the inputs told so far, for x ↦ (x − mean)·inv_std."""
        if self.inputs is None:
            raise ConfigError("normalize", "is 0: no input statistics are kept (ARS(..., normalize=d))")
        return self.inputs.normaliser()

    def state_dict(self) -> dict[str, Any]:
        """Everything the next ``ask`` depends on: θ, the iteration, the settings (and V2's statistics)."""
        state: dict[str, Any] = {
            "theta": self._theta.cpu().clone(),
            "iteration": self.iteration,
            "params": dataclasses.asdict(self.params),
        }
        if self.inputs is not None:
            state["inputs"] = (self.inputs.count, self.inputs.mean.copy(), self.inputs.m2.copy())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output; refused if the settings differ or anything is missing."""
        missing = [key for key in ("theta", "iteration", "params") if key not in state]
        if missing:
            raise ConfigError("state", f"lacks {', '.join(missing)} (expected what state_dict() returns)")
        mine = dataclasses.asdict(self.params)
        defaults = {f.name: f.default for f in dataclasses.fields(ARSParams) if f.name in ARS_DEFAULTS_ADDED}
        saved = {**defaults, **state["params"]}
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
        if self.inputs is not None and "inputs" in state:
            count, mean, m2 = state["inputs"]
            self.inputs = RunningStat(
                float(count), np.asarray(mean, dtype=np.float64), np.asarray(m2, dtype=np.float64)
            )

    def _directions(self, indices: list[int]) -> torch.Tensor:
        return self._noise.directions(self.iteration, 0, indices, self.kind.noise_size, device=self.device)

    def _draw(self, kept: list[int], cols: slice) -> torch.Tensor:
        return self._noise.directions(self.iteration, 0, kept, self.kind.noise_size, device=self.device, entries=cols)


#: settings added after states were first saved: a state without them was made with their defaults
ARS_DEFAULTS_ADDED = ("fitness", "perturbation", "rank", "normalize")


def _integral(value: Any) -> bool:
    """An integer of Python or NumPy (not a bool, not a float that happens to be whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _count(name: str, value: Any, low: int = 1) -> int:
    if not (_integral(value) and value >= low):
        raise ConfigError(name, f"must be an integer >= {low} (got {value!r})")
    return int(value)


def _floats(name: str, values: Any, shape: tuple[int, ...], expected: str) -> np.ndarray:
    """``values`` as float64 of ``shape`` (-1: any length), or ``ConfigError`` naming ``name``."""
    try:
        out = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(name, f"must be {expected} ({err})") from None
    if out.ndim != len(shape) or any(want not in (-1, got) for want, got in zip(shape, out.shape, strict=False)):
        raise ConfigError(name, f"expected {expected}, got shape {out.shape}")
    return out


def _theta(init: Any, num_params: int, numpy: bool, device: torch.device) -> torch.Tensor:
    try:
        theta = torch.zeros(num_params) if init is None else torch.as_tensor(np.asarray(init) if numpy else init)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ConfigError("init", f"must be num_params={num_params} numbers ({err})") from None
    theta = theta.detach().to(device, torch.float32).reshape(-1).clone()
    if theta.numel() != num_params:
        raise ConfigError("init", f"must hold num_params={num_params} values (got {theta.numel()})")
    if not bool(torch.isfinite(theta).all()):
        raise ConfigError("init", "must hold finite values (got NaN or infinity)")
    return theta


def _checked(
    num_params: Any,
    directions: Any,
    top_directions: Any,
    step_size: Any,
    noise_std: Any,
    seed: Any,
    branch_batch: Any,
    fitness: Any,
    perturbation: Any,
) -> ARSParams:
    """The settings as plain Python numbers, or ``ConfigError`` naming the first bad one."""
    counts = {"num_params": num_params, "directions": directions, "branch_batch": branch_batch}
    for name, value in counts.items():
        _count(name, value)
    if not (_integral(top_directions) and 0 <= top_directions <= directions):
        raise ConfigError(
            "top_directions", f"must be an integer in [0, directions={directions}] (got {top_directions!r})"
        )
    for name, value in (("step_size", step_size), ("noise_std", noise_std)):
        if not (_real(value) and math.isfinite(value) and value > 0):
            raise ConfigError(name, f"must be a finite number > 0 (got {value!r})")
    if not (_integral(seed) and 0 <= seed < 2**63):
        raise ConfigError("seed", f"must be an integer in [0, 2**63) (got {seed!r})")
    if fitness not in FITNESS:
        raise ConfigError("fitness", f"must be one of {', '.join(FITNESS)} (got {fitness!r})")
    if fitness != "ars" and top_directions not in (0, directions):
        raise ConfigError("top_directions", f"is ARS's b; fitness {fitness} keeps every direction (leave it 0)")
    if perturbation not in ("dense", "lowrank"):
        raise ConfigError("perturbation", f"must be dense or lowrank (got {perturbation!r})")
    return ARSParams(
        int(num_params),
        int(directions),
        int(top_directions),
        float(step_size),
        float(noise_std),
        int(seed),
        int(branch_batch),
        str(fitness),
        str(perturbation),
    )
