"""Spaces whose parameters are entries of z or exact zeros: θ_i = z[code_i] (code d = 0).

Pruning (``pruned``) and weight sharing (``shared``) both map every model parameter
to one coordinate of z — its own (a surviving weight, a bias), its layer's centroid
(a shared weight) — or to nothing (a pruned weight, exactly 0). ``to_params`` is
then one gather from z extended by a trailing zero, identical on every rank and for
any batch size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec


class IndexedSpace:
    kind = "indexed"

    def __init__(self, codes: torch.Tensor, z0: torch.Tensor | None, size: int, info: dict[str, Any]) -> None:
        self.codes = codes  # int64 [P], values in [0, size]; size means "exactly 0"
        self.z0 = z0
        self.size = size
        self.info = info

    @classmethod
    def from_arrays(cls, spec: ParamSpec, arrays: dict[str, np.ndarray], options: Any, device: Any) -> IndexedSpace:
        codes = torch.from_numpy(np.asarray(arrays["codes"], dtype=np.int64)).to(device)
        if codes.numel() != spec.size:
            raise ValueError(f"search space codes for {codes.numel()} parameters, the model has {spec.size}")
        info = {k: v for k, v in arrays.items() if k not in ("codes", "z")}
        return cls(codes, None, int(arrays["searched"]), {k: np.asarray(v).item() for k, v in info.items()})

    def initial(self) -> torch.Tensor:
        assert self.z0 is not None, "a space rebuilt from a checkpoint has no z₀"
        return self.z0

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        extended = torch.cat([z, z.new_zeros(*z.shape[:-1], 1)], dim=-1)
        return extended[..., self.codes.to(z.device)]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"codes": self.codes.cpu().numpy(), **{k: np.asarray(v) for k, v in self.info.items()}}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.info}


def bitmask_bytes(n: int) -> int:
    return (n + 7) // 8
