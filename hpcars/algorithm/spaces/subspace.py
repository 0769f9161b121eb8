"""A random subspace: θ = θ₀ + P z, z ∈ R^d, ARS in z.

The "intrinsic dimension" construction of Li, Farkhoor, Liu & Yosinski 2018
(arXiv 1804.08838): train only the d coordinates of a fixed random affine subspace
through θ₀. P [P_params, d] is regenerated from the run seed on every rank, never
stored and never sent; θ₀ is stored in the checkpoint (it may come from
``--init-from``).

P is **sparse**: row i (parameter i) has c = 4 non-zeros, in columns drawn uniformly
(with replacement) and with random signs, all of magnitude sqrt(d / (P·c)) so that
each column has unit norm in expectation — a step of length ‖Δz‖ moves θ by about
‖Δz‖. Why sparse: for P = 10⁶ and d = 10³–10⁴ a dense P holds 10⁹–10¹⁰ entries (4–40
GB); regenerated in chunks instead, it costs B·P·d multiply-adds plus P·d normal
draws per batch of B branches — minutes per iteration on a CPU. The sparse P holds
4·P column indices and signs (≈ 20 MB for 10⁶ parameters, independent of d) and
costs 4·B·P multiply-adds: the same work for any d. Fastfood (O(P log d)) would
also fit in memory but costs ~log₂ d passes over [B, P] per call. ``bench/
compression.py`` measures the dense-in-chunks alternative beside it.

Generation: a CPU ``torch.Generator`` seeded with ``stream_key(seed ^ STREAM, 0, 0, 0)``
draws ``randint(d, (P, c))`` column indices, then ``randint(2, (P, c))`` signs
(1 → +1, 0 → −1). ``to_params`` adds, for each row of z, ``scale · Σ_c sign · z[col]``
to θ₀, in parameter chunks (fixed order: the result of a row never depends on B).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec
from hpcars.algorithm.noise import stream_key
from hpcars.errors import ConfigError

STREAM = 0x5B5A
NONZEROS = 4  # c, non-zeros per row of P
CHUNK_ELEMENTS = 1 << 22  # rows × parameters × c gathered at once (16 MB of float32)


def projection(seed: int, parameters: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(columns int64 [P, c], signs float32 [P, c] of ±1, scale) of the sparse P."""
    g = torch.Generator(device="cpu").manual_seed(stream_key(seed ^ STREAM, 0, 0, 0) & (2**63 - 1))
    columns = torch.randint(dim, (parameters, NONZEROS), generator=g)
    signs = torch.randint(2, (parameters, NONZEROS), generator=g).to(torch.float32) * 2 - 1
    return columns, signs, math.sqrt(dim / (parameters * NONZEROS))


class Subspace:
    kind = "subspace"

    def __init__(self, theta0: torch.Tensor, dim: int, seed: int) -> None:
        self.theta0 = theta0
        self.size = dim
        self.seed = seed
        columns, signs, self.scale = projection(seed, theta0.numel(), dim)
        self.columns, self.signs = columns.to(theta0.device), signs.to(theta0.device)

    @classmethod
    def build(cls, spec: ParamSpec, theta0: torch.Tensor, dim: int, seed: int) -> Subspace:
        if not 1 <= dim <= spec.size:
            raise ConfigError("--subspace-dim", f"must be in [1, {spec.size}] (the model's parameters) (got {dim})")
        return cls(theta0.detach().clone(), dim, seed)

    @classmethod
    def from_arrays(cls, spec: ParamSpec, arrays: dict[str, np.ndarray], options: Any, device: Any) -> Subspace:
        theta0 = torch.from_numpy(np.asarray(arrays["theta0"], dtype=np.float32)).to(device)
        return cls(theta0, options.subspace_dim, options.seed)

    def initial(self) -> torch.Tensor:
        return torch.zeros(self.size, dtype=torch.float32, device=self.theta0.device)

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        rows = z.reshape(-1, self.size)
        out = self.theta0.to(z.device).expand(rows.shape[0], -1).clone()
        step = max(1, CHUNK_ELEMENTS // (rows.shape[0] * NONZEROS))
        columns, signs = self.columns.to(z.device), self.signs.to(z.device)
        for start in range(0, out.shape[1], step):
            part = slice(start, start + step)
            gathered = rows[:, columns[part]]  # [B, chunk, c]
            out[:, part] += self.scale * (gathered * signs[part]).sum(dim=-1)
        return out.reshape(*lead, -1)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"theta0": self.theta0.cpu().numpy()}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "searched": self.size,
            "parameters": self.theta0.numel(),
            "nonzeros_per_parameter": NONZEROS,
            "compressed_bytes": 4 * self.size,  # z; θ₀ and the seed are needed besides
        }
