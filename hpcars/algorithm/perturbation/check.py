"""``hpcars.check_perturbation``: the batched branches of your model against explicit weights.

The first thing to run on a model of your own, as ``torch.autograd.gradcheck`` is for a
custom gradient::

    report = hpcars.check_perturbation(model, example_inputs, rank=1, noise_std=0.01, branches=4)
    print(report.describe())                  # the largest deviation per output
    assert report.exact(), report.describe()

It draws ``branches`` directions the way a run does (antithetic signs, ``noise_std``), evaluates
them batched — the path training takes: every branch in one call on shared weights, corrections
from hooks — and one by one, each branch's parameters θ + sν·δ built in full and handed to
the model with ``torch.func.functional_call``. A parameter the hooks cannot reach (a parent
reading a child's weight) is refused first, in one line (``uses.foreign_uses``).

``example_inputs``: a tensor, a tuple of positional arguments or a dict of keyword ones; every
tensor whose leading dimension is the batch's (that of the first tensor) is repeated for each
branch. ``python -m hpcars.train --check-perturbation`` runs the same check on the first
iteration's inputs before training.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.utils import _pytree as pytree

from hpcars.algorithm.branches import BatchedModel, ParamSpec, supports_stacked
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation.hooks import branch_hooks
from hpcars.algorithm.perturbation.lowrank import LowRank
from hpcars.algorithm.perturbation.uses import foreign_uses
from hpcars.errors import ConfigError

#: relative deviation (to the output's largest magnitude) below which a batched output counts as exact
RTOL = 1e-4


@dataclass(frozen=True)
class PerturbationCheck:
    """Per output (its path in the model's output, ``out`` for a plain tensor): the largest
    deviation of the batched branches from the explicit ones, and the outputs' largest magnitude."""

    deviation: dict[str, float]
    scale: dict[str, float]
    branches: int
    perturbation: str

    def relative(self) -> dict[str, float]:
        return {k: v / max(self.scale[k], 1e-30) for k, v in self.deviation.items()}

    def exact(self, rtol: float = RTOL) -> bool:
        """Whether every output is within ``rtol`` of the explicit computation (float32 rounding)."""
        return all(math.isfinite(v) and v <= rtol for v in self.relative().values())

    def describe(self) -> str:
        parts = [
            f"{name} {self.deviation[name]:.3g} (of {self.scale[name]:.3g}: {rel:.2g})"
            for name, rel in self.relative().items()
        ]
        verdict = "exact" if self.exact() else "NOT EXACT"
        return f"{self.perturbation} x{self.branches} branches vs explicit weights: {verdict}; " + ", ".join(parts)


def _arguments(example_inputs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def _tiled(args: tuple[Any, ...], kwargs: dict[str, Any], count: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Every tensor of the batch's leading dimension, repeated for each branch (branch-major)."""
    leaves, spec = pytree.tree_flatten((args, kwargs))
    first = next(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))
    n = first.shape[0]

    def tile(leaf: Any) -> Any:
        if isinstance(leaf, torch.Tensor) and leaf.dim() and leaf.shape[0] == n:
            return leaf.repeat(count, *([1] * (leaf.dim() - 1)))
        return leaf

    return pytree.tree_unflatten([tile(leaf) for leaf in leaves], spec)


def _outputs(out: Any) -> dict[str, torch.Tensor]:
    """The tensor leaves of a model's output, by their path (``out`` for a plain tensor)."""
    if isinstance(out, torch.Tensor):
        return {"out": out}
    found = {}
    for path, leaf in pytree.tree_flatten_with_path(out)[0]:
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            found[pytree.keystr(path).lstrip(".") or "out"] = leaf
    return found


def refuse_foreign_uses(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``ConfigError`` naming the first parameter a module uses without owning it (see ``uses``)."""
    found = foreign_uses(model, *args, **kwargs)
    if found:
        raise ConfigError("--perturbation", found[0].message())


def check_perturbation(
    model: nn.Module,
    example_inputs: Any,
    perturbation: str = "lowrank",
    rank: int = 1,
    noise_std: float = 0.01,
    branches: int = 4,
    seed: int = 0,
) -> PerturbationCheck:
    """Compare the batched branches of ``model`` with explicit per-branch weights on
    ``example_inputs`` (see the module's text); ``ConfigError`` where the model cannot be made exact."""
    if perturbation not in ("lowrank", "dense"):
        raise ConfigError("perturbation", f"must be lowrank or dense (got {perturbation!r})")
    if not (isinstance(branches, int) and branches >= 1):
        raise ConfigError("branches", f"must be an integer >= 1 (got {branches!r})")
    args, kwargs = _arguments(example_inputs)
    spec = ParamSpec.of(model)
    theta = spec.flatten(model)
    kind = LowRank.of(model, rank) if perturbation == "lowrank" else None
    if kind is not None:
        refuse_foreign_uses(model, args, kwargs)
    size = kind.noise_size if kind is not None else spec.size
    directions = NoiseSource(seed).directions(0, 0, range(branches), size, device=theta.device)
    signs = torch.tensor([1.0 if b % 2 == 0 else -1.0 for b in range(branches)], device=theta.device)
    scale = noise_std * signs
    owner = torch.zeros(branches, dtype=torch.long, device=theta.device)
    which = torch.arange(branches, device=theta.device)
    work = copy.deepcopy(model)
    one_tensor = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
    with torch.no_grad():
        if kind is not None:
            low = kind.branches(theta[None], owner, scale, directions, which)
            dense = low.dense()
            if one_tensor and supports_stacked(work):  # the path a run takes: stacked products
                batched = _outputs(BatchedModel(work, theta.device)(low, args[0]))
            else:  # the path a run takes: every branch in one call, corrections from hooks
                tiled_args, tiled_kwargs = _tiled(args, kwargs, branches)
                low.load_base(work, 0)
                with branch_hooks(work, low):
                    batched = _outputs(work(*tiled_args, **tiled_kwargs))
        else:
            if not one_tensor:
                raise ConfigError("example_inputs", "with perturbation='dense': one tensor, the model's input")
            dense = theta[None] + scale[:, None] * directions
            batched = _outputs(BatchedModel(work, theta.device)(dense, args[0]))  # one shared input
        explicit = [_outputs(functional_call(model, spec.unflatten(dense[b]), args, kwargs)) for b in range(branches)]
    deviation, magnitude = {}, {}
    for name in explicit[0]:
        alone = torch.stack([e[name] for e in explicit])  # [B, n, ...]
        together = batched[name].reshape(alone.shape)
        deviation[name] = float((together - alone).abs().max())
        magnitude[name] = float(alone.abs().max())
    return PerturbationCheck(deviation, magnitude, branches, perturbation)


def before_training(
    module: nn.Module, inputs: Any, hooked: bool, compare: bool, settings: dict[str, Any]
) -> PerturbationCheck | None:
    """What a run checks on the task's example inputs before training: with low-rank branches
    that hooks compute (``hooked``), refuse a parameter no hook can see; with ``compare``
    (``--check-perturbation``) run ``check_perturbation`` with ``settings`` and refuse if the
    branches are not exact. ``ConfigError`` either way; the report otherwise."""
    if hooked and not compare:
        refuse_foreign_uses(module, inputs, {})
    if not compare:
        return None
    report = check_perturbation(module, inputs, **settings)
    if not report.exact():
        raise ConfigError("--check-perturbation", report.describe())
    return report
