"""Small torch modules used by the tasks: an MLP and the V2 input normaliser."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

#: the buffers of ``Normalized``: set from the V2 statistics, not part of the model's own state
NORMALISER_BUFFERS = ("mean", "inv_std")


class Normalized(nn.Module):
    """``inner((x − mean) · inv_std)``: ARS V2's state normalisation as a wrapper.

    ``mean`` and ``inv_std`` are buffers, not parameters: they are never perturbed,
    and the trainer sets them from the merged running statistics once per
    iteration (frozen within it).
    """

    if TYPE_CHECKING:  # the buffers' types for mypy; no class annotations at run time (they trip torch.jit.script)
        mean: torch.Tensor
        inv_std: torch.Tensor

    def __init__(self, inner: nn.Module, dim: int) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("inv_std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.mean) * self.inv_std)


def mlp(sizes: Sequence[int], *, bias: bool = True) -> nn.Sequential:
    """Linear layers of the given widths with tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(nn.Tanh())
        layers.append(nn.Linear(a, b, bias=bias))
    return nn.Sequential(*layers)
