"""Low-rank branches of any module: the branches are the batch, corrections come from hooks.

For models that are not plain stacks of ``nn.Linear`` (a transformer, a Hugging Face
causal LM) the module is called once on the rows of all B branches stacked branch-major
(B·n rows, one input per branch or the shared input repeated), with its own weights set to
the shared base θ. A forward hook on every layer that owns parameters then adds each
branch's part of the output:

* ``nn.Linear``: sν (x B_b) A_bᵀ/√R, plus the bias's dense noise;
* ``nn.Embedding``: sν A_b[ids] B_bᵀ/√R (the rows of A for the ids looked up);
* ``nn.LayerNorm``: normalized(x)·δw_b + δb_b;
* any other layer with parameters of its own (e.g. an RMSNorm): recomputed branch by
  branch with that one layer's perturbed parameters built — one layer at a time, never a
  whole model per branch. Such a layer must take one tensor whose rows are the batch.

Weights tied between two layers (``named_parameters`` lists them once) are perturbed where
they are listed only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

if TYPE_CHECKING:
    from hpcars.algorithm.perturbation.lowrank import LowRankBranches


def hooked_forward(
    module: nn.Module, branches: LowRankBranches, shared: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
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
            branches.spec.load(module, branches.bases[base])  # the shared weights: this base's θ
            with branch_hooks(module, group):
                parts.append(module(per))
            order.append(picked)
        out = torch.cat(parts).reshape(count, -1, *parts[0].shape[1:])
        out = out[torch.argsort(torch.cat(order))] if len(parts) > 1 else out
        return out if shared else out.reshape(count, *out.shape[2:])

    return call


class branch_hooks:
    """Forward hooks that add every branch's correction while the context is open: inside it,
    ``module`` (holding the branches' shared base weights) called on rows stacked branch-major
    — any number of rows per branch, any extra arguments (a KV cache) — computes every branch."""

    def __init__(self, module: nn.Module, branches: LowRankBranches) -> None:
        self.handles = []
        for prefix, layer in module.named_modules():
            own = [name for name, _ in layer.named_parameters(recurse=False)]
            if not own:
                continue
            name = f"{prefix}." if prefix else ""
            hook = _hook_for(layer, name, branches)
            self.handles.append(layer.register_forward_hook(hook))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def _hook_for(layer: nn.Module, name: str, branches: LowRankBranches) -> Callable[..., Any]:
    count = len(branches)

    def delta(param: str) -> torch.Tensor:
        """A vector parameter's per-branch noise [B, size] (its value minus the base's)."""
        return branches.vectors[name + param] - branches.base_value(name + param)[None]

    if isinstance(layer, nn.Linear):

        def linear(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            rows = out.view(count, -1, out.shape[-1])  # the layer's fresh output, corrected in place
            if name + "weight" in branches.factors:
                a, b = branches.factors[name + "weight"]
                x = inputs[0].reshape(count, -1, inputs[0].shape[-1])
                rows.baddbmm_(torch.bmm(x, b), a.transpose(1, 2))  # + (x B_b) A_bᵀ, one pass over the output
            if mod.bias is not None and name + "bias" in branches.vectors:
                rows.add_(delta("bias")[:, None, :])
            return out

        return linear
    if isinstance(layer, nn.Embedding):

        def embedding(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            if name + "weight" not in branches.factors:
                return out
            a, b = branches.factors[name + "weight"]  # [B, V, R] (scaled), [B, d, R]
            ids = inputs[0].reshape(count, -1)
            rows = a[torch.arange(count, device=a.device)[:, None], ids]  # [B, k, R]
            out.view(count, -1, out.shape[-1]).baddbmm_(rows, b.transpose(1, 2))
            return out

        return embedding
    if isinstance(layer, nn.LayerNorm) and layer.elementwise_affine:
        norm = layer

        def layer_norm(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            normed = F.layer_norm(inputs[0], norm.normalized_shape, eps=norm.eps)
            rows = out.view(count, -1, out.shape[-1])
            rows.addcmul_(normed.view(count, -1, out.shape[-1]), delta("weight")[:, None, :])
            if norm.bias is not None:
                rows.add_(delta("bias")[:, None, :])
            return out

        return layer_norm

    inside: list[bool] = []  # the per-branch calls below run this very layer: no hook for them

    def one_layer_per_branch(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if inside:
            return out
        if len(inputs) != 1:
            raise ValueError(f"--perturbation lowrank: layer {name or type(mod).__name__} takes several inputs")
        x = inputs[0].reshape(count, -1, *inputs[0].shape[1:])
        params = {param: branches.layer_values(name + param) for param, _ in mod.named_parameters(recurse=False)}
        inside.append(True)
        try:
            outs = [functional_call(mod, {p: v[b] for p, v in params.items()}, (x[b],)) for b in range(count)]
        finally:
            inside.clear()
        return torch.stack(outs).reshape(out.shape)

    return one_layer_per_branch
