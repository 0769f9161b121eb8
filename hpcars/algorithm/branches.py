"""Batched evaluation of many parameter vectors ("branches") of one torch module.

ARS evaluates 2N perturbed copies of one model. Instead of loading each copy into
the module and calling it in a Python loop, the parameters live as one flat vector
θ (float32, in ``named_parameters()`` order), a rank stacks its branches into a
[B, P] tensor and runs one ``torch.func.vmap`` over ``functional_call``: one
vectorised call for B models. This works for any ``torch.nn.Module`` whose forward
is vmap-compatible; buffers (e.g. the V2 normaliser's mean and scale) are shared by
all branches and are not perturbed.

Fast path: models built only from ``nn.Linear``, ``nn.Sequential``, the V2
``Normalized`` wrapper and element-wise activations (linear policies, MLPs — what
ARS uses) are evaluated with einsum on the stacked weights instead of vmap. With a
shared input the first layer becomes one GEMM ``x @ [W_1 … W_B]ᵀ``, which is several
times faster than the batched matrix-vector products vmap produces for it. Any
other module goes through vmap; the tests check both against a per-branch loop.

The flat order (``ParamSpec.names``) is also the byte order of ``params_sha256``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn
from torch.func import functional_call, vmap

from hpcars.algorithm.models import Normalized

ELEMENTWISE = (nn.Identity, nn.Tanh, nn.ReLU, nn.Sigmoid, nn.ELU, nn.GELU, nn.LeakyReLU, nn.Softplus, nn.SiLU)


def supports_stacked(module: nn.Module) -> bool:
    """True if ``stacked_forward`` can evaluate this module."""
    if isinstance(module, (nn.Linear, *ELEMENTWISE)):
        return True
    if isinstance(module, nn.Sequential):
        return all(supports_stacked(child) for child in module)
    if isinstance(module, Normalized):
        return supports_stacked(module.inner)
    return False


#: how one ``nn.Linear`` of the stacked family is evaluated: (layer, its name prefix, x, shared) -> y
LinearRule = Callable[[nn.Linear, str, torch.Tensor, bool], torch.Tensor]


def stacked_walk(
    module: nn.Module, linear: LinearRule, x: torch.Tensor, shared: bool, prefix: str = ""
) -> tuple[torch.Tensor, bool]:
    """Forward through a module of the stacked family (``supports_stacked``), each ``nn.Linear``
    evaluated by ``linear`` for all branches; ``shared``: x has no branch dimension yet."""
    if isinstance(module, nn.Linear):
        return linear(module, prefix, x, shared), False
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            x, shared = stacked_walk(child, linear, x, shared, f"{prefix}{name}.")
        return x, shared
    if isinstance(module, Normalized):
        return stacked_walk(module.inner, linear, (x - module.mean) * module.inv_std, shared, prefix + "inner.")
    return module(x), shared  # element-wise


def stacked_forward(
    module: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool
) -> tuple[torch.Tensor, bool]:
    """Forward B stacked parameter sets; ``shared``: x has no branch dimension yet."""

    def linear(layer: nn.Linear, prefix: str, x: torch.Tensor, shared: bool) -> torch.Tensor:
        weight = params[prefix + "weight"]  # [B, out, in]
        if not shared and x.dim() == 2:  # one input row per branch (RL): a batched mat-vec
            y = torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1)
        else:
            y = torch.einsum("...i,boi->b...o" if shared else "b...i,boi->b...o", x, weight)
        if layer.bias is not None:
            bias = params[prefix + "bias"]
            y = y + bias.reshape(bias.shape[0], *([1] * (y.dim() - 2)), bias.shape[1])
        return y

    return stacked_walk(module, linear, x, shared)


@dataclass(frozen=True)
class ParamSpec:
    """Names and shapes of a module's parameters, in flattening order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, module: nn.Module) -> ParamSpec:
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @functools.cached_property
    def slots(self) -> dict[str, tuple[slice, tuple[int, ...]]]:
        """name -> (its slice of the flat vector, its shape), computed once."""
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            size = math.prod(shape)
            out[name] = (slice(start, start + size), shape)
            start += size
        return out

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def flatten(self, module: nn.Module) -> torch.Tensor:
        params = dict(module.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """[..., P] -> {name: [..., *shape]} (views, no copy)."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes, strict=True)}

    def load(self, module: nn.Module, flat: torch.Tensor) -> None:
        """Copy a flat vector into the module's parameters (the per-branch loop's way)."""
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in self.unflatten(flat).items():
                params[name].copy_(value)


class BranchSet(Protocol):
    """Branches that are not a dense [B, P] stack (``hpcars.algorithm.perturbation.lowrank``):
    they evaluate themselves on a module, or give their dense stack."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def device(self) -> torch.device: ...

    def bind(self, module: nn.Module, shared: bool) -> Callable[[torch.Tensor], torch.Tensor] | None: ...

    def dense(self) -> torch.Tensor: ...


#: what a task hands to ``BatchedModel``: a dense stack [B, P], or a ``BranchSet``
Stack = torch.Tensor | BranchSet


class BatchedModel:
    """Calls one module with B parameter vectors at once: stack [B, P] -> outputs [B, ...]."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module.to(device)
        self.device = device
        self.spec = ParamSpec.of(module)

        def one(params: dict[str, torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, params, inputs)

        self._one = one
        self.stacked = supports_stacked(module)

    def __call__(self, stack: Stack, x: torch.Tensor) -> torch.Tensor:
        """Evaluate every row of ``stack`` on the same input: [B, P], [n, ...] -> [B, n, ...]."""
        return self._batched(stack, x, shared=True)

    def per_branch(self, stack: Stack, x: torch.Tensor) -> torch.Tensor:
        """Evaluate row b of ``stack`` on ``x[b]``: [B, P], [B, ...] -> [B, ...]."""
        return self._batched(stack, x, shared=False)

    def _batched(self, stack: Stack, x: torch.Tensor, shared: bool, use_vmap: bool = False) -> torch.Tensor:
        with torch.no_grad():
            return self.bind(stack, shared, use_vmap)(x)

    def bind(
        self, stack: Stack, shared: bool = False, use_vmap: bool = False
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """The B models of ``stack`` as one function of the input, for repeated calls
        (an RL rollout calls it every step). Call it under ``torch.no_grad()``."""
        if not isinstance(stack, torch.Tensor):  # low-rank branches on shared weights
            bound = stack.bind(self.module, shared)
            if bound is not None:
                return bound
            stack = stack.dense()  # a model without a low-rank forward: its branches in full
        params = self.spec.unflatten(stack)
        if self.stacked and not use_vmap:
            return lambda x: stacked_forward(self.module, params, x, shared)[0]
        batched = vmap(self._one, in_dims=(0, None if shared else 0))
        return lambda x: batched(params, x)

    def single(self, flat: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """Evaluate one parameter vector."""
        with torch.no_grad():
            return functional_call(self.module, self.spec.unflatten(flat), inputs)


def weight_slices(spec: ParamSpec) -> list[tuple[str, slice, bool]]:
    """(name, its slice of the flat vector, whether it is a weight (≥ 2 dims)) per parameter."""
    out, start = [], 0
    for name, shape, size in zip(spec.names, spec.shapes, spec.sizes, strict=True):
        out.append((name, slice(start, start + size), len(shape) >= 2))
        start += size
    return out
