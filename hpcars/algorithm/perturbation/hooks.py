"""Low-rank branches of any module: the branches are the batch, corrections come from hooks.

For models that are not plain stacks of ``nn.Linear`` (a transformer, a Hugging Face
causal LM) the module is called once on the rows of all B branches stacked branch-major
(B·n rows, one input per branch or the shared input repeated), with its own weights set to
the shared base θ. Every layer that owns parameters then gives each branch its own
parameters θ + sν·δ_b, by the cheapest exact means its type allows:

* ``nn.Linear`` (and transformers' ``Conv1D``, the same product with the weight transposed):
  a forward hook adds sν (x B_b) A_bᵀ/√R, plus the bias's dense noise;
* ``nn.Embedding``: a hook adds sν A_b[ids] B_bᵀ/√R (the rows of A for the ids looked up);
* ``nn.LayerNorm`` (over any number of dimensions): a hook adds normalized(x)·δw_b + δb_b;
* any other layer whose parameters are all its own (e.g. an RMSNorm): recomputed branch by
  branch with that one layer's perturbed parameters built — one layer at a time;
* a module that owns parameters *and* has child layers with parameters (a learned position
  table as a bare ``nn.Parameter`` beside ``nn.Linear`` children): its whole forward runs
  branch by branch with every parameter under it built for that branch (exact, at the cost of
  dense evaluation for that part of the model), its children's hooks silent meanwhile.

A parameter shared by several layers (tied embeddings: ``named_parameters`` lists the matrix
once, under its first name) gets one perturbation, applied at every layer that uses it. An
input whose leading dimension is 1 where the call has B·n rows (position ids that a model
builds for itself and broadcasts) is shared by every row: the layer's output is widened to
B·n rows and each branch's part corrected. What cannot be made exact is refused, never
approximated: a layer using a parameter it does not own (``F.linear(x, self.embed.weight)``
in a parent) is found before training by ``uses.foreign_uses``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from hpcars.algorithm.perturbation.layer_hooks import (
    NORMS,
    BranchValues,
    Call,
    branch_by_branch,
    canonical_names,
    hook_for,
    is_conv1d,
    is_norm,
)

__all__ = [
    "NORMS",
    "BranchValues",
    "branch_hooks",
    "canonical_names",
    "hooked_forward",
    "is_conv1d",
    "is_norm",
    "owners",
]


def owners(module: nn.Module) -> Iterator[tuple[str, nn.Module, list[tuple[str, str]], bool]]:
    """(prefix, layer, [(its own parameter's local name, canonical name)], has child layers with
    parameters) for every module that owns parameters."""
    canonical = canonical_names(module)
    for prefix, layer in module.named_modules(remove_duplicate=False):
        own = [(local, canonical[id(p)]) for local, p in layer.named_parameters(recurse=False)]
        if not own:
            continue
        inner = {id(p) for p in layer.parameters()} - {id(p) for _, p in layer.named_parameters(recurse=False)}
        yield prefix, layer, own, bool(inner)


def hooked_forward(module: nn.Module, branches: BranchValues, shared: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The B branches of ``module`` as one function of the input (shared: [n, ...] for all;
    else [B, ...], row b for branch b) -> [B, n, ...] or [B, ...]."""
    count = len(branches)

    def call(x: torch.Tensor) -> torch.Tensor:
        rows = x.unsqueeze(0).expand(count, *x.shape).reshape(count * x.shape[0], *x.shape[1:]) if shared else x
        parts, order = [], []
        for base in torch.unique(branches.owner).tolist():
            picked = torch.nonzero(branches.owner == base).flatten()
            group = branches.select(picked)
            per = rows.reshape(count, -1, *rows.shape[1:])[picked].reshape(-1, *rows.shape[1:])
            branches.load_base(module, base)  # the shared weights: this base's θ
            with branch_hooks(module, group):
                parts.append(module(per))
            order.append(picked)
        out = torch.cat(parts).reshape(count, -1, *parts[0].shape[1:])
        out = out[torch.argsort(torch.cat(order))] if len(parts) > 1 else out
        return out if shared else out.reshape(count, *out.shape[2:])

    return call


class branch_hooks:
    """While open, ``module`` (holding the branches' shared base weights) called on rows stacked
    branch-major — any number of rows per branch, any extra arguments (a KV cache) — computes
    every branch (see the module's text)."""

    def __init__(self, module: nn.Module, branches: BranchValues) -> None:
        self.call = call = Call(module, branches)
        self.handles: list[Any] = [module.register_forward_pre_hook(call.record_rows, with_kwargs=True)]
        self.replaced: list[nn.Module] = []
        for prefix, layer, own, has_children in owners(module):
            name = f"{prefix}." if prefix else ""
            if has_children:
                layer.forward = branch_by_branch(call, layer, layer.forward, name)
                self.replaced.append(layer)
            else:
                self.handles.append(layer.register_forward_hook(hook_for(call, layer, name, dict(own))))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        for layer in self.replaced:
            del layer.forward  # the class's own forward again
