"""The full space: ARS searches θ itself (d = P). The default, today's behaviour."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec


class FullSpace:
    kind = "full"

    def __init__(self, theta0: torch.Tensor | None, size: int) -> None:
        self.theta0 = theta0
        self.size = size

    @classmethod
    def from_arrays(cls, spec: ParamSpec, arrays: dict[str, np.ndarray], options: Any, device: Any) -> FullSpace:
        return cls(None, spec.size)

    def initial(self) -> torch.Tensor:
        assert self.theta0 is not None, "a space rebuilt from a checkpoint has no θ₀"
        return self.theta0

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "searched": self.size, "parameters": self.size, "compressed_bytes": 4 * self.size}
