"""Where a model uses each parameter: the one case low-rank hooks cannot make exact.

``hooks.branch_hooks`` gives each branch its parameters at the layer that owns them — a hook on
an ``nn.Linear`` corrects that layer's output. A module that reads *another* module's
parameter in its own computation (the usual hand-written tied head,
``F.linear(x, self.embed.weight)``) bypasses every hook: its branches would all compute with
the base weights, and the run would silently estimate a gradient for a perturbation it never
applied. ``foreign_uses`` finds such uses by running the model once on example inputs, with a
``TorchFunctionMode`` that sees every torch operation and the module running when it happens:
an operation on a parameter while none of that parameter's owners is the innermost running
module is foreign. Reading a parameter's metadata (shape, dtype, device) is not a use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

#: tensor methods that read metadata only
METADATA = frozenset(
    {"__get__", "size", "dim", "numel", "stride", "is_contiguous", "element_size", "data_ptr", "__len__", "nelement"}
)


@dataclass(frozen=True)
class ForeignUse:
    """Parameter ``parameter`` (its name in θ), owned by ``owner``, computed with inside ``user``."""

    parameter: str
    owner: str
    user: str

    def message(self) -> str:
        return (
            f"lowrank: parameter {self.parameter} (of {self.owner or 'the model'}) is used directly by "
            f"{self.user or 'the model'}, "
            "which no low-rank hook can see: its branches would not be perturbed there. Call the owning layer instead "
            "(or tie the weights by sharing the Parameter between two layers), or use --perturbation dense"
        )


class _Watch(TorchFunctionMode):
    def __init__(self, owners: dict[int, set[str]], names: dict[int, str], stack: list[str]) -> None:
        super().__init__()
        self.owners, self.names, self.stack = owners, names, stack
        self.found: list[ForeignUse] = []

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in METADATA:
            current = self.stack[-1] if self.stack else ""
            for leaf in pytree.tree_leaves((args, kwargs)):
                if isinstance(leaf, nn.Parameter) and id(leaf) in self.owners and current not in self.owners[id(leaf)]:
                    use = ForeignUse(self.names[id(leaf)], sorted(self.owners[id(leaf)])[0], current)
                    if use not in self.found:
                        self.found.append(use)
        return func(*args, **kwargs)


def foreign_uses(module: nn.Module, *inputs: Any, **kwargs: Any) -> list[ForeignUse]:
    """Every parameter that ``module(*inputs, **kwargs)`` computes with outside the modules that own
    it (none for a model the hooks make exact). The module runs once, without gradients."""
    owners: dict[int, set[str]] = {}
    for prefix, layer in module.named_modules(remove_duplicate=False):
        for _, p in layer.named_parameters(recurse=False):
            owners.setdefault(id(p), set()).add(prefix)
    names = {id(p): name for name, p in module.named_parameters()}
    stack: list[str] = []

    def enter(prefix: str) -> Callable[..., None]:
        return lambda *_: stack.append(prefix)  # a pre-hook that returns None leaves the input alone

    def leave(*_: Any) -> None:
        stack.pop()

    handles = []
    for prefix, layer in module.named_modules(remove_duplicate=False):
        handles.append(layer.register_forward_pre_hook(enter(prefix)))
        handles.append(layer.register_forward_hook(leave, always_call=True))
    watch = _Watch(owners, names, stack)
    try:
        with torch.no_grad(), watch:
            module(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return watch.found
