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
        self.branches = branches
        self.count = len(branches)
        self.names = canonical_names(module)  # id(parameter) -> its name in θ
        self.rows = 0  # B·n of the current call (a pre-hook on the module reads it)
        self.quiet = 0  # > 0 inside a branch-by-branch call: the hooks under it stay silent
        self.handles: list[Any] = [module.register_forward_pre_hook(self._record_rows, with_kwargs=True)]
        self.replaced: list[nn.Module] = []
        for prefix, layer, own, has_children in owners(module):
            name = f"{prefix}." if prefix else ""
            if has_children:
                layer.forward = self._branch_by_branch(layer, layer.forward, name)
                self.replaced.append(layer)
            else:
                self.handles.append(layer.register_forward_hook(self._hook_for(layer, name, dict(own))))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        for layer in self.replaced:
            del layer.forward  # the class's own forward again

    # -- the call's rows --------------------------------------------------------------
    def _record_rows(self, mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.quiet:
            return
        first = next((t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
        if first is None or first.dim() == 0 or first.shape[0] % self.count:
            raise ValueError(
                f"--perturbation lowrank: the model's first input must hold the {self.count} branches' rows "
                f"(got {None if first is None else tuple(first.shape)})"
            )
        self.rows = first.shape[0]

    def _per_branch(self, x: torch.Tensor, where: str) -> tuple[torch.Tensor, bool]:
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

    def _widened(self, out: torch.Tensor, broadcast: bool) -> torch.Tensor:
        """The layer's output with B·n rows: as it is, or a broadcast one copied out to every row."""
        return out.expand(self.rows, *out.shape[1:]).contiguous() if broadcast else out

    def _add(self, out: torch.Tensor, correction: torch.Tensor, broadcast: bool) -> torch.Tensor:
        """out (B·n rows) + each branch's correction [B, m, d] (m: per branch; broadcast: per row too)."""
        d = out.shape[-1]
        if broadcast:
            out.view(self.count, self.rows // self.count, -1, d).add_(correction.view(self.count, 1, -1, d))
        else:
            out.view(self.count, -1, d).add_(correction.view(self.count, -1, d))
        return out

    # -- one hook per kind of layer ------------------------------------------------------
    def _hook_for(self, layer: nn.Module, name: str, own: dict[str, str]) -> Callable[..., Any]:
        branches = self.branches
        where = name[:-1] or type(layer).__name__

        def delta(local: str) -> torch.Tensor:
            """A dense parameter's per-branch noise [B, size] (its value minus the base's)."""
            return branches.vectors[own[local]] - branches.base_value(own[local]).reshape(1, -1)

        if isinstance(layer, nn.Linear) or is_conv1d(layer):
            transposed = not isinstance(layer, nn.Linear)  # Conv1D: W [in, out], so x·(A Bᵀ) = (x A) Bᵀ

            def linear(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
                if self.quiet:
                    return out
                x, broadcast = self._per_branch(inputs[0], where)
                out = self._widened(out, broadcast)
                if own["weight"] in branches.factors:
                    a, b = branches.factors[own["weight"]]
                    left, right = (a, b) if transposed else (b, a)
                    if broadcast:
                        self._add(out, torch.bmm(torch.bmm(x, left), right.transpose(1, 2)), True)
                    else:  # + (x B_b) A_bᵀ, in place: one pass over the output
                        out.view(self.count, -1, out.shape[-1]).baddbmm_(torch.bmm(x, left), right.transpose(1, 2))
                if getattr(mod, "bias", None) is not None and own.get("bias") in branches.vectors:
                    self._add(out, delta("bias")[:, None, :].expand(-1, x.shape[1], -1), broadcast)
                return out

            return linear
        if isinstance(layer, nn.Embedding):

            def embedding(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
                if self.quiet or own["weight"] not in branches.factors:
                    return out
                ids = inputs[0]
                broadcast = ids.shape[0] != self.rows
                self._per_branch(ids[..., None], where)  # the same check of the leading dimension
                out = self._widened(out, broadcast)
                a, b = branches.factors[own["weight"]]  # [B, V, R] (scaled), [B, d, R]
                picked = ids.reshape(1 if broadcast else self.count, -1).expand(self.count, -1)
                rows = a[torch.arange(self.count, device=a.device)[:, None], picked]  # [B, k, R]
                return self._add(out, torch.bmm(rows, b.transpose(1, 2)), broadcast)

            return embedding
        if isinstance(layer, nn.LayerNorm) and layer.elementwise_affine:
            norm = layer
            shape = tuple(norm.normalized_shape)

            def layer_norm(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
                if self.quiet:
                    return out
                x = inputs[0]
                broadcast = x.shape[0] != self.rows
                self._per_branch(x, where)
                out = self._widened(out, broadcast)
                normed = F.layer_norm(x, shape, eps=norm.eps)
                per = out.view(self.count, -1, *shape)
                normed = normed.reshape(1 if broadcast else self.count, -1, *shape)
                per.addcmul_(normed, delta("weight").view(self.count, 1, *shape))
                if norm.bias is not None:
                    per.add_(delta("bias").view(self.count, 1, *shape))
                return out

            return layer_norm
        if (
            type(layer).__name__.endswith("RMSNorm")
            and set(own) == {"weight"}
            and layer.get_parameter("weight").dim() == 1
        ):
            return self._rms_norm(name, own["weight"])
        return self._layer_by_branch(layer, name, own)

    def _rms_norm(self, name: str, weight: str) -> Callable[..., Any]:
        """An RMSNorm (Llama's, Qwen2's, Gemma's (1 + w) form, torch's): its output is affine in its
        weight, elementwise, so out(w + δ) = out(w) + (out(w + 1) − out(w))·δ — one more call of the
        layer, not one per branch."""
        branches = self.branches

        def rms_norm(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            if self.quiet:
                return out
            x = inputs[0]
            broadcast = x.shape[0] != self.rows
            self._per_branch(x, name[:-1] or type(mod).__name__)
            self.quiet += 1
            try:
                shifted = mod.get_parameter("weight") + 1
                slope = functional_call(mod, {"weight": shifted}, (x,)) - out
            finally:
                self.quiet -= 1
            out = self._widened(out, broadcast)
            delta = branches.vectors[weight] - branches.base_value(weight).reshape(1, -1)  # [B, d]
            d = out.shape[-1]
            if broadcast:
                return self._add(out, slope.reshape(1, -1, d) * delta[:, None, :], True)
            out.view(self.count, -1, d).addcmul_(slope.reshape(self.count, -1, d), delta[:, None, :])
            return out

        return rms_norm

    def _layer_by_branch(self, layer: nn.Module, name: str, own: dict[str, str]) -> Callable[..., Any]:
        """A leaf with parameters of its own and no rule above: recomputed branch by branch."""
        branches, where = self.branches, name[:-1] or type(layer).__name__

        def one_layer(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
            if self.quiet:
                return out
            if len(inputs) != 1:
                raise ValueError(f"--perturbation lowrank: layer {where} takes several inputs")
            x = inputs[0]
            broadcast = x.shape[0] != self.rows
            self._per_branch(x, where)
            pieces = []
            self.quiet += 1  # the per-branch calls run this very layer: no hook for them
            try:
                for b in range(self.count):
                    params = {local: branches.value(canonical, b) for local, canonical in own.items()}
                    xb = x if broadcast else x.reshape(self.count, -1, *x.shape[1:])[b]
                    y = functional_call(mod, params, (xb,))
                    pieces.append(y.expand(self.rows // self.count, *y.shape[1:]) if broadcast else y)
            finally:
                self.quiet -= 1
            return torch.cat(pieces).reshape(self.rows, *pieces[0].shape[1:])

        return one_layer

    def _branch_by_branch(self, layer: nn.Module, forward: Callable[..., Any], name: str) -> Callable[..., Any]:
        """A module with parameters of its own and child layers: its forward, branch by branch, with
        every parameter under it built for the branch (the hooks under it silent meanwhile)."""
        branches, where = self.branches, name[:-1] or type(layer).__name__

        def per_branch(*args: Any, **kwargs: Any) -> Any:
            if self.quiet:
                return forward(*args, **kwargs)
            count, rows = self.count, self.rows
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
            self.quiet += 1
            try:
                for b in range(count):
                    args_b, kwargs_b = pytree.tree_unflatten([part(leaf, b) for leaf in leaves], spec)
                    params = {local: branches.value(self.names[id(p)], b) for local, p in layer.named_parameters()}
                    outputs.append(functional_call(layer, params, args_b, kwargs_b))
            finally:
                self.quiet -= 1
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
