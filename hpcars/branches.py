"""Batched evaluation of many parameter vectors ("branches") of one torch module.

ARS evaluates 2N perturbed copies of one model. Instead of loading each copy into
the module and calling it in a Python loop, the parameters live as one flat vector
θ (float32, in ``named_parameters()`` order), a rank stacks its branches into a
[B, P] tensor and runs one ``torch.func.vmap`` over ``functional_call``: one
vectorised call for B models. This works for any ``torch.nn.Module`` whose forward
is vmap-compatible; buffers (e.g. the V2 normaliser's mean and scale) are shared by
all branches and are not perturbed.

The flat order (``ParamSpec.names``) is also the byte order of ``params_sha256``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap


@dataclass(frozen=True)
class ParamSpec:
    """Names and shapes of a module's parameters, in flattening order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, module: nn.Module) -> "ParamSpec":
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

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
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def load(self, module: nn.Module, flat: torch.Tensor) -> None:
        """Copy a flat vector into the module's parameters (the per-branch loop's way)."""
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in self.unflatten(flat).items():
                params[name].copy_(value)


class BatchedModel:
    """Calls one module with B parameter vectors at once: stack [B, P] -> outputs [B, ...]."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module.to(device)
        self.device = device
        self.spec = ParamSpec.of(module)

        def one(params: dict[str, torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, params, inputs)

        self._one = one

    def __call__(self, stack: torch.Tensor, *shared_inputs: torch.Tensor) -> torch.Tensor:
        """Evaluate every row of ``stack`` on the same inputs."""
        params = self.spec.unflatten(stack)
        batched = vmap(self._one, in_dims=(0,) + (None,) * len(shared_inputs))
        with torch.no_grad():
            return batched(params, *shared_inputs)

    def per_branch(self, stack: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """Evaluate row b of ``stack`` on inputs[...][b] (each branch its own inputs)."""
        params = self.spec.unflatten(stack)
        with torch.no_grad():
            return vmap(self._one)(params, *inputs)

    def single(self, flat: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """Evaluate one parameter vector."""
        with torch.no_grad():
            return functional_call(self.module, self.spec.unflatten(flat), inputs)
