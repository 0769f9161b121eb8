"""The hooks that give each branch its parameters, one kind of layer at a time (``hooks``).

``Call`` is one batched call's context — the branches, the call's B·n rows, whether the hooks
are silent — and ``hook_for`` the forward hook a layer that owns parameters gets: a thin
correction of its output (``nn.Linear``, transformers' ``Conv1D``, ``nn.Embedding``,
``nn.LayerNorm``, an RMSNorm), or the layer recomputed branch by branch. A module that owns
parameters and has child layers runs its whole forward branch by branch
(``branch_by_branch``). ``hooks.branch_hooks`` installs them; the module's text there says
what each does and why it is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils import _pytree as pytree

#: layers whose ≥ 2-dimensional parameters get dense noise, not low-rank factors (an elementwise
#: scale has no matrix product to correct); others with "Norm" in their class name count too
NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase, nn.RMSNorm)


class BranchValues(Protocol):
    """What the hooks need of a set of low-rank branches (``lowrank.LowRankBranches``)."""

    bases: torch.Tensor
    owner: torch.Tensor
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    vectors: dict[str, torch.Tensor]

    def __len__(self) -> int: ...

    def base_value(self, name: str) -> torch.Tensor: ...

    def value(self, name: str, branch: int) -> torch.Tensor: ...

    def load_base(self, module: nn.Module, base: int) -> None: ...

    def select(self, rows: torch.Tensor) -> BranchValues: ...


def is_norm(layer: nn.Module) -> bool:
    return isinstance(layer, NORMS) or "Norm" in type(layer).__name__


def is_conv1d(layer: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): y = x W + b with W [in, out]."""
    return type(layer).__name__ == "Conv1D" and hasattr(layer, "nf") and getattr(layer, "weight", None) is not None


def canonical_names(module: nn.Module) -> dict[int, str]:
    """id(parameter) -> the name ``named_parameters`` (and so θ) lists it under."""
    return {id(p): name for name, p in module.named_parameters()}


class Call:
    """One batched call's context: the branches, the rows of the call (B·n, read by a pre-hook on
    the model), and whether the hooks are silent (inside a branch-by-branch call)."""

    def __init__(self, module: nn.Module, branches: BranchValues) -> None:
        self.branches = branches
        self.count = len(branches)
        self.names = canonical_names(module)  # id(parameter) -> its name in θ
        self.rows = 0  # B·n of the current call
        self.quiet = 0  # > 0 inside a branch-by-branch call: the hooks under it stay silent

    def record_rows(self, mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.quiet:
            return
        first = next((t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
        if first is None or first.dim() == 0 or first.shape[0] % self.count:
            raise ValueError(
                f"--perturbation lowrank: the model's first input must hold the {self.count} branches' rows "
                f"(got {None if first is None else tuple(first.shape)})"
            )
        self.rows = first.shape[0]

    def per_branch(self, x: torch.Tensor, where: str) -> tuple[torch.Tensor, bool]:
        """x as [B, m, d] (m: its rows per branch, all dimensions but the last flattened) and whether
        it is broadcast (one leading row for every branch)."""
        if x.shape[0] == self.rows:
            return x.reshape(self.count, -1, x.shape[-1]), False
        if x.shape[0] == 1:
            return x.reshape(1, -1, x.shape[-1]).expand(self.count, -1, -1), True
        raise ValueError(
            f"--perturbation lowrank: layer {where} got an input of leading dimension {x.shape[0]}: "
            f"neither the call's {self.rows} rows nor 1"
        )

    def widened(self, out: torch.Tensor, broadcast: bool) -> torch.Tensor:
        """The layer's output with B·n rows: as it is, or a broadcast one copied out to every row."""
        return out.expand(self.rows, *out.shape[1:]).contiguous() if broadcast else out

    def add(self, out: torch.Tensor, correction: torch.Tensor, broadcast: bool) -> torch.Tensor:
        """out (B·n rows) + each branch's correction [B, m, d] (m: per branch; broadcast: per row too)."""
        d = out.shape[-1]
        if broadcast:
            out.view(self.count, self.rows // self.count, -1, d).add_(correction.view(self.count, 1, -1, d))
        else:
            out.view(self.count, -1, d).add_(correction.view(self.count, -1, d))
        return out


def hook_for(call: Call, layer: nn.Module, name: str, own: dict[str, str]) -> Callable[..., Any]:
    """The forward hook that gives every branch its parameters at ``layer`` (see the module's text);
    ``own``: the layer's own parameters, local name -> name in θ."""
    if isinstance(layer, nn.Linear) or is_conv1d(layer):
        return linear_hook(call, name, own, transposed=not isinstance(layer, nn.Linear))
    if isinstance(layer, nn.Embedding):
        return embedding_hook(call, name, own)
    if isinstance(layer, nn.LayerNorm) and layer.elementwise_affine:
        return layer_norm_hook(call, layer, name, own)
    if type(layer).__name__.endswith("RMSNorm") and set(own) == {"weight"} and layer.get_parameter("weight").dim() == 1:
        return rms_norm_hook(call, name, own["weight"])
    return layer_by_branch_hook(call, layer, name, own)


def _delta(call: Call, own: dict[str, str], local: str) -> torch.Tensor:
    """A dense parameter's per-branch noise [B, size] (its value minus the base's)."""
    return call.branches.vectors[own[local]] - call.branches.base_value(own[local]).reshape(1, -1)


def linear_hook(call: Call, name: str, own: dict[str, str], transposed: bool) -> Callable[..., Any]:
    """``nn.Linear``: + sν (x B_b) A_bᵀ/√R and the bias's noise; transformers' ``Conv1D`` (``transposed``:
    W [in, out], so x·(A Bᵀ) = (x A) Bᵀ)."""
    branches, where = call.branches, name[:-1] or "the model"

    def linear(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if call.quiet:
            return out
        x, broadcast = call.per_branch(inputs[0], where)
        out = call.widened(out, broadcast)
        if own["weight"] in branches.factors:
            a, b = branches.factors[own["weight"]]
            left, right = (a, b) if transposed else (b, a)
            if broadcast:
                call.add(out, torch.bmm(torch.bmm(x, left), right.transpose(1, 2)), True)
            else:  # + (x B_b) A_bᵀ, in place: one pass over the output
                out.view(call.count, -1, out.shape[-1]).baddbmm_(torch.bmm(x, left), right.transpose(1, 2))
        if getattr(mod, "bias", None) is not None and own.get("bias") in branches.vectors:
            call.add(out, _delta(call, own, "bias")[:, None, :].expand(-1, x.shape[1], -1), broadcast)
        return out

    return linear


def embedding_hook(call: Call, name: str, own: dict[str, str]) -> Callable[..., Any]:
    """``nn.Embedding``: + sν A_b[ids] B_bᵀ/√R, the rows of A for the ids looked up."""
    branches, where = call.branches, name[:-1] or "the model"

    def embedding(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if call.quiet or own["weight"] not in branches.factors:
            return out
        ids = inputs[0]
        broadcast = ids.shape[0] != call.rows
        call.per_branch(ids[..., None], where)  # the same check of the leading dimension
        out = call.widened(out, broadcast)
        a, b = branches.factors[own["weight"]]  # [B, V, R] (scaled), [B, d, R]
        picked = ids.reshape(1 if broadcast else call.count, -1).expand(call.count, -1)
        rows = a[torch.arange(call.count, device=a.device)[:, None], picked]  # [B, k, R]
        return call.add(out, torch.bmm(rows, b.transpose(1, 2)), broadcast)

    return embedding


def layer_norm_hook(call: Call, norm: nn.LayerNorm, name: str, own: dict[str, str]) -> Callable[..., Any]:
    """``nn.LayerNorm`` over any number of dimensions: + normalized(x)·δw_b + δb_b."""
    where, shape = name[:-1] or "the model", tuple(norm.normalized_shape)

    def layer_norm(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if call.quiet:
            return out
        x = inputs[0]
        broadcast = x.shape[0] != call.rows
        call.per_branch(x, where)
        out = call.widened(out, broadcast)
        normed = F.layer_norm(x, shape, eps=norm.eps)
        per = out.view(call.count, -1, *shape)
        normed = normed.reshape(1 if broadcast else call.count, -1, *shape)
        per.addcmul_(normed, _delta(call, own, "weight").view(call.count, 1, *shape))
        if norm.bias is not None:
            per.add_(_delta(call, own, "bias").view(call.count, 1, *shape))
        return out

    return layer_norm


def rms_norm_hook(call: Call, name: str, weight: str) -> Callable[..., Any]:
    """An RMSNorm (Llama's, Qwen2's, Gemma's (1 + w) form, torch's): its output is affine in its
    weight, elementwise, so out(w + δ) = out(w) + (out(w + 1) − out(w))·δ — one more call of the
    layer, not one per branch."""
    branches = call.branches

    def rms_norm(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if call.quiet:
            return out
        x = inputs[0]
        broadcast = x.shape[0] != call.rows
        call.per_branch(x, name[:-1] or type(mod).__name__)
        call.quiet += 1
        try:
            shifted = mod.get_parameter("weight") + 1
            slope = functional_call(mod, {"weight": shifted}, (x,)) - out
        finally:
            call.quiet -= 1
        out = call.widened(out, broadcast)
        delta = branches.vectors[weight] - branches.base_value(weight).reshape(1, -1)  # [B, d]
        d = out.shape[-1]
        if broadcast:
            return call.add(out, slope.reshape(1, -1, d) * delta[:, None, :], True)
        out.view(call.count, -1, d).addcmul_(slope.reshape(call.count, -1, d), delta[:, None, :])
        return out

    return rms_norm


def layer_by_branch_hook(call: Call, layer: nn.Module, name: str, own: dict[str, str]) -> Callable[..., Any]:
    """A leaf with parameters of its own and no rule above: recomputed branch by branch."""
    branches, where = call.branches, name[:-1] or type(layer).__name__

    def one_layer(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
        if call.quiet:
            return out
        if len(inputs) != 1:
            raise ValueError(f"--perturbation lowrank: layer {where} takes several inputs")
        x = inputs[0]
        broadcast = x.shape[0] != call.rows
        call.per_branch(x, where)
        pieces = []
        call.quiet += 1  # the per-branch calls run this very layer: no hook for them
        try:
            for b in range(call.count):
                params = {local: branches.value(canonical, b) for local, canonical in own.items()}
                xb = x if broadcast else x.reshape(call.count, -1, *x.shape[1:])[b]
                y = functional_call(mod, params, (xb,))
                pieces.append(y.expand(call.rows // call.count, *y.shape[1:]) if broadcast else y)
        finally:
            call.quiet -= 1
        return torch.cat(pieces).reshape(call.rows, *pieces[0].shape[1:])

    return one_layer


def branch_by_branch(call: Call, layer: nn.Module, forward: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A module with parameters of its own and child layers: its forward, branch by branch, with
    every parameter under it built for the branch (the hooks under it silent meanwhile)."""
    branches, where = call.branches, name[:-1] or type(layer).__name__

    def per_branch(*args: Any, **kwargs: Any) -> Any:
        if call.quiet:
            return forward(*args, **kwargs)
        count, rows = call.count, call.rows
        n = rows // count
        leaves, spec = pytree.tree_flatten((args, kwargs))
        for leaf in leaves:
            if not (leaf is None or isinstance(leaf, (torch.Tensor, bool, int, float, str))):
                raise ValueError(
                    f"--perturbation lowrank: {where} owns parameters and has child layers, so it runs branch by "
                    f"branch, which takes tensor arguments only (got {type(leaf).__name__})"
                )

        def part(leaf: Any, b: int) -> Any:
            if isinstance(leaf, torch.Tensor) and leaf.dim() and leaf.shape[0] == rows:
                return leaf[b * n : (b + 1) * n]
            return leaf  # shared by every row (a broadcast tensor, a flag)

        outputs = []
        call.quiet += 1
        try:
            for b in range(count):
                args_b, kwargs_b = pytree.tree_unflatten([part(leaf, b) for leaf in leaves], spec)
                params = {local: branches.value(call.names[id(p)], b) for local, p in layer.named_parameters()}
                outputs.append(functional_call(layer, params, args_b, kwargs_b))
        finally:
            call.quiet -= 1
        return pytree.tree_map(lambda *parts: _stacked(parts, n, where), *outputs)

    return per_branch


def _stacked(parts: tuple[Any, ...], n: int, where: str) -> Any:
    """One output leaf of every branch's call -> the leaf of the whole call (B·n rows)."""
    if not isinstance(parts[0], torch.Tensor):
        return parts[0]
    if parts[0].dim() and parts[0].shape[0] == n:
        return torch.cat(parts)
    if parts[0].dim() and parts[0].shape[0] == 1:  # computed from broadcast inputs only: one row per branch
        return torch.cat([p.expand(n, *p.shape[1:]) for p in parts])
    raise ValueError(f"--perturbation lowrank: {where} returned a tensor of shape {tuple(parts[0].shape)} per branch")
