"""Low-rank perturbations on shared weights (``--perturbation lowrank --perturbation-rank R``).

EGGROLL (Sarkar et al. 2025, "Evolution Strategies at the Hyperscale", arXiv 2511.16652):
direction k perturbs every weight matrix W [m, n] by A_k B_kᵀ/√R, A_k [m, R] and B_k
[n, R] standard normal, and never forms the perturbed matrix: branch k of a layer
computes x Wᵀ + s ν (x B_k) A_kᵀ/√R, so all branches share one W and a population costs
one batched inference plus thin corrections. Parameters of fewer than two dimensions
(biases, norms) keep dense noise. Each entry of A Bᵀ/√R has unit variance, so ν means
what it means for dense noise.

The factors are the direction's normals (``hpcars.algorithm.noise``, one stream per
(seed, iteration, member, k)) cut in parameter order: for a matrix parameter (any with
two or more dimensions, viewed as [shape[0], rest]) m·R entries for A (row-major) then
n·R for B; for any other parameter its own size. ``noise_size`` is their total — for a
4.5 M-parameter MLP with R = 1 about 6,000 normals instead of 4.5 M.

The update Σ_k w_k A_k B_kᵀ/√R is one [m, b·R] × [b·R, n] product per matrix, added in place
to a float32 step (θ + step is then formed in float64 blocks, ``population.layer.move``), the
vectors' Σ w_k δ_k one [b] × [b, size] product.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from hpcars.algorithm.branches import ParamSpec, stacked_walk, supports_stacked
from hpcars.algorithm.perturbation.dense import Draw
from hpcars.algorithm.perturbation.hooks import hooked_forward, is_norm, owners


@dataclass(frozen=True)
class Piece:
    """Where one parameter lives: its slice of θ, and of a direction's normals."""

    name: str
    params: slice  # of the flat θ
    noise: slice  # of the direction's normals
    rows: int  # m for a matrix, 0 for a dense (vector) parameter
    cols: int  # n for a matrix


def layout(spec: ParamSpec, rank: int, dense: frozenset[str] = frozenset()) -> tuple[list[Piece], int]:
    """Every parameter's ``Piece`` and the normals per direction (``dense``: parameters of two or
    more dimensions that still get one normal per entry, e.g. a LayerNorm's over two dimensions)."""
    pieces, at_p, at_n = [], 0, 0
    for name, shape, size in zip(spec.names, spec.shapes, spec.sizes, strict=True):
        if len(shape) >= 2 and name not in dense:
            m, n = shape[0], size // shape[0]
            used = (m + n) * rank
            pieces.append(Piece(name, slice(at_p, at_p + size), slice(at_n, at_n + used), m, n))
        else:
            used = size
            pieces.append(Piece(name, slice(at_p, at_p + size), slice(at_n, at_n + used), 0, 0))
        at_p, at_n = at_p + size, at_n + used
    return pieces, at_n


@dataclass
class LowRankBranches:
    """B branches as shared base parameters plus per-branch factors; what ``BatchedModel`` takes
    in place of a dense [B, P] stack.

    ``bases`` [U, P] are the distinct unperturbed θ rows (one for plain ARS), ``owner`` [B] the
    base of each branch; ``factors[name]`` = (A·sν/√R [B, m, R], B [B, n, R]) per matrix,
    ``vectors[name]`` the dense per-branch values [B, size] of every other parameter."""

    spec: ParamSpec
    bases: torch.Tensor
    owner: torch.Tensor
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    vectors: dict[str, torch.Tensor]

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.owner), self.bases.shape[1])

    @property
    def device(self) -> torch.device:
        return self.bases.device

    def __len__(self) -> int:
        return len(self.owner)

    def weight(self, name: str) -> torch.Tensor:
        """The shared matrix ``name`` of base 0 [m, n] (U = 1) or of every base [U, m, n]."""
        columns, shape = self._slot(name)
        return self.bases[:, columns].reshape(len(self.bases), *shape)

    def dense(self) -> torch.Tensor:
        """The perturbed parameters as a [B, P] stack (tests, and models without a low-rank forward)."""
        out = self.bases[self.owner].clone()
        start = 0
        for name, size in zip(self.spec.names, self.spec.sizes, strict=True):
            part = out[:, start : start + size]
            if name in self.factors:
                a, b = self.factors[name]
                part += torch.einsum("bmr,bnr->bmn", a, b).reshape(len(out), size)
            else:
                part.copy_(self.vectors[name])
            start += size
        return out

    # -- evaluation -----------------------------------------------------------------------
    def select(self, rows: torch.Tensor) -> LowRankBranches:
        """The branches ``rows`` only (same bases)."""
        factors = {n: (a[rows], b[rows]) for n, (a, b) in self.factors.items()}
        return LowRankBranches(
            self.spec, self.bases, self.owner[rows], factors, {n: v[rows] for n, v in self.vectors.items()}
        )

    def _slot(self, name: str) -> tuple[slice, tuple[int, ...]]:
        return self.spec.slots[name]

    def base_value(self, name: str) -> torch.Tensor:
        """Parameter ``name`` of the first branch's base (every branch's, after ``select`` by base)."""
        part, shape = self._slot(name)
        return self.bases[int(self.owner[0]), part].reshape(shape)

    def value(self, name: str, branch: int) -> torch.Tensor:
        """Parameter ``name`` of branch ``branch``, built in full [*shape]."""
        part, shape = self._slot(name)
        base = self.bases[int(self.owner[branch]), part].reshape(shape)
        if name in self.factors:
            a, b = self.factors[name]
            return base + (a[branch] @ b[branch].T).reshape(shape)
        return self.vectors[name][branch].reshape(shape)

    def load_base(self, module: nn.Module, base: int) -> None:
        """Set the module's parameters to base ``base``'s θ (the weights every branch shares)."""
        self.spec.load(module, self.bases[base])

    def layer_values(self, name: str) -> torch.Tensor:
        """Parameter ``name`` of every branch, built in full [B, *shape] (one layer at a time)."""
        part, shape = self._slot(name)
        base = self.bases[:, part][self.owner].reshape(len(self), *shape)
        if name in self.factors:
            a, b = self.factors[name]
            return base + torch.einsum("bmr,bnr->bmn", a, b).reshape(base.shape)
        return self.vectors[name].reshape(base.shape)

    def bind(self, module: nn.Module, shared: bool) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The B branches of ``module`` as one function of the input: stacks of ``nn.Linear`` through
        ``branches.stacked_walk``, anything else with the branches as the batch and hooks (``hooks.py``)."""
        if supports_stacked(module):
            return lambda x: stacked_walk(module, partial(_linear, branches=self), x, shared)[0]
        return hooked_forward(module, self, shared)


def dense_matrices(module: nn.Module) -> frozenset[str]:
    """The parameters of two or more dimensions that a normalisation layer owns: an elementwise
    scale, perturbed densely like a vector (``hooks.NORMS``)."""
    return frozenset(
        canonical
        for _, layer, own, _ in owners(module)
        if is_norm(layer)
        for local, canonical in own
        if getattr(layer, local).dim() >= 2
    )


class LowRank:
    """The low-rank perturbation kind for one model (its ``ParamSpec``) and rank R; ``dense``: the
    parameters of two or more dimensions that keep dense noise (``dense_matrices``)."""

    kind = "lowrank"
    update_dtype = torch.float32  # Σ w_k A_k B_kᵀ/√R: float64 would double the update's memory at 10⁸

    def __init__(self, spec: ParamSpec, rank: int, dense: frozenset[str] = frozenset()) -> None:
        self.spec = spec
        self.rank = rank
        self.pieces, self.noise_size = layout(spec, rank, dense)

    @property
    def update_size(self) -> int:
        """Entries of a step vector: the model's parameters."""
        return self.spec.size

    @classmethod
    def of(cls, module: nn.Module, rank: int) -> LowRank:
        """The kind for ``module``: its parameters (``ParamSpec.of``) and the matrices that stay dense."""
        return cls(ParamSpec.of(module), rank, dense_matrices(module))

    def width(self, branch_batch: int) -> int:
        """Branches per batched call: ``branch_batch`` (their factors are thin)."""
        return branch_batch

    def branches(
        self,
        bases: torch.Tensor,
        owner: torch.Tensor,
        scale: torch.Tensor,
        directions: torch.Tensor,
        which: torch.Tensor,
    ) -> LowRankBranches:
        """Branch b is bases[owner[b]] + scale[b]·(the direction made from ``directions[which[b]]``);
        scale 0: unperturbed."""
        count, r = len(owner), self.rank
        noise = directions[which]
        factors, vectors = {}, {}
        for piece in self.pieces:
            normals = noise[:, piece.noise]
            if piece.rows:
                m, n = piece.rows, piece.cols
                a = normals[:, : m * r].reshape(count, m, r) * (scale / math.sqrt(r))[:, None, None]
                factors[piece.name] = (a, normals[:, m * r :].reshape(count, n, r))
            else:
                base = bases[:, piece.params][owner]
                perturbed = scale != 0
                values = base.clone()
                values[perturbed] = base[perturbed] + scale[perturbed, None] * normals[perturbed]
                vectors[piece.name] = values
        return LowRankBranches(self.spec, bases, owner, factors, vectors)

    def step(self, weights: torch.Tensor, draw: Draw, total: torch.Tensor) -> None:
        """total += Σ_k weights[k] δ_k (float32 [P]; δ_k: direction k's A Bᵀ/√R and vector noise),
        each matrix's part one [m, b·R] × [b·R, n] product added in place."""
        noise = draw(slice(0, self.noise_size))
        weights = weights.to(noise.dtype)
        count, r = len(weights), self.rank
        for piece in self.pieces:
            normals = noise[:, piece.noise]
            if piece.rows:
                m, n = piece.rows, piece.cols
                a = normals[:, : m * r].reshape(count, m, r) * weights[:, None, None]
                b = normals[:, m * r :].reshape(count, n, r)
                left = a.permute(1, 0, 2).reshape(m, count * r)
                right = b.permute(0, 2, 1).reshape(count * r, n)
                total[piece.params].view(m, n).addmm_(left, right, alpha=1 / math.sqrt(r))
            else:
                total[piece.params] += weights @ normals


def _linear(module: nn.Linear, name: str, x: torch.Tensor, shared: bool, branches: LowRankBranches) -> torch.Tensor:
    """x Wᵀ + (x B) Aᵀ + b for every branch; W shared (per base when there are several)."""
    a, b = branches.factors[name + "weight"]
    weight = branches.weight(name + "weight")  # [U, out, in]
    if len(weight) == 1:  # one GEMM over every row (shared: [n, out]; per branch: [B, ..., out])
        base = torch.mm(x.reshape(-1, x.shape[-1]), weight[0].T).reshape(*x.shape[:-1], weight.shape[1])
    else:
        owner = branches.owner
        rows = x if not shared else x.expand(len(owner), *x.shape)
        base = torch.empty(*rows.shape[:-1], weight.shape[1], dtype=x.dtype, device=x.device)
        for u in torch.unique(owner).tolist():
            at = owner == u
            base[at] = rows[at] @ weight[u].T
    spec = "...i,bir->b...r" if shared else "b...i,bir->b...r"
    thin = torch.einsum(spec, x, b)  # x B_k [B, ..., R]
    count = len(branches)
    if shared and base.dim() < thin.dim():  # the shared rows' output becomes per branch here
        y = base + torch.einsum("b...r,bor->b...o", thin, a)
    else:  # corrected in place: one pass over the output
        y = base
        y.view(count, -1, y.shape[-1]).baddbmm_(thin.reshape(count, -1, thin.shape[-1]), a.transpose(1, 2))
    if module.bias is not None:
        bias = branches.vectors[name + "bias"]
        y += bias.reshape(bias.shape[0], *([1] * (y.dim() - 2)), bias.shape[1])
    return y
