"""Search spaces: the vector ARS searches, and how it becomes the model's parameters.

ARS perturbs and updates a vector z of dimension d; a search space maps a stack of
such vectors [B, d] to model parameter vectors [B, P] (``to_params``), which the
task scores. Noise, the update, the population's operators and the divergence
guard all live in z-space, so the cost of regenerating noise and the variance of
the ARS estimate scale with d, not P.

=========  ================================================  ==========================
space      z                                                 module
=========  ================================================  ==========================
full       θ itself (d = P), today's behaviour               ``full``
pruned     the weights surviving magnitude pruning, biases    ``pruned``
shared     per-layer k-means centroids (2^bits), biases       ``shared``
subspace   coordinates of θ − θ₀ in a random projection       ``subspace``
=========  ================================================  ==========================

Every space is built from θ₀ (the task's initial parameters, or ``--init-from``'s)
and is a deterministic function of it and the run seed, so every rank builds the
same one. ``arrays()`` is its structure (mask, indices, θ₀) for the checkpoint's
``/search_space`` group, from which ``restore`` rebuilds it exactly on resume.
"Weights" are the parameters with two or more dimensions (matrices, kernels);
one-dimensional parameters (biases, norms) are never pruned or shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec, weight_slices
from hpcars.errors import ConfigError

SPACES = ("full", "pruned", "shared", "subspace")


class SearchSpace(Protocol):
    kind: str
    #: d, the dimension ARS searches
    size: int

    def initial(self) -> torch.Tensor:
        """z₀ [d] float32: the point of the space that is θ₀ (or closest to it)."""
        ...

    def to_params(self, z: torch.Tensor) -> torch.Tensor:
        """[..., d] -> model parameters [..., P] (float32, same device)."""
        ...

    def arrays(self) -> dict[str, np.ndarray]:
        """The space's structure for the checkpoint (what ``from_arrays`` needs besides config)."""
        ...

    def describe(self) -> dict[str, Any]:
        """searched dimension, parameters, sparsity, bits, compressed bytes, ..."""
        ...


@dataclass(frozen=True)
class SpaceOptions:
    kind: str = "full"
    sparsity: float = 0.0  # pruned (and shared): fraction of each weight tensor set to 0
    bits: int = 0  # shared: 2^bits centroids per weight tensor
    subspace_dim: int = 0  # subspace: d
    seed: int = 0  # subspace: the projection's seed (the run seed)


def make_space(options: SpaceOptions, spec: ParamSpec, theta0: torch.Tensor) -> SearchSpace:
    """The space for these options around θ₀ [P]; ``ConfigError`` naming the option at fault."""
    from hpcars.algorithm.spaces.full import FullSpace
    from hpcars.algorithm.spaces.pruned import PrunedSpace
    from hpcars.algorithm.spaces.shared import SharedSpace
    from hpcars.algorithm.spaces.subspace import Subspace

    if options.kind == "full":
        return FullSpace(theta0, spec.size)
    if options.kind in ("pruned", "shared") and not any(w for _, _, w in weight_slices(spec)):
        raise ConfigError("--search-space", f"{options.kind} needs a model with weight matrices; this one has none")
    if options.kind == "pruned":
        return PrunedSpace.build(spec, theta0, options.sparsity)
    if options.kind == "shared":
        return SharedSpace.build(spec, theta0, options.bits, options.sparsity)
    return Subspace.build(spec, theta0, options.subspace_dim, options.seed)


def space_from_arrays(options: SpaceOptions, spec: ParamSpec, arrays: dict[str, np.ndarray], device) -> SearchSpace:
    """Rebuild a checkpoint's space exactly (no k-means, no pruning decision is redone)."""
    from hpcars.algorithm.spaces.full import FullSpace
    from hpcars.algorithm.spaces.indexed import IndexedSpace
    from hpcars.algorithm.spaces.pruned import PrunedSpace
    from hpcars.algorithm.spaces.shared import SharedSpace
    from hpcars.algorithm.spaces.subspace import Subspace

    kinds: dict[str, type[FullSpace | IndexedSpace | Subspace]] = {
        "full": FullSpace,
        "pruned": PrunedSpace,
        "shared": SharedSpace,
        "subspace": Subspace,
    }
    return kinds[options.kind].from_arrays(spec, arrays, options, device)
