"""Magnitude pruning: ARS searches only the weights that survive.

Deep Compression's first stage (Han, Mao & Dally 2016, arXiv 1510.00149): the
smallest-magnitude weights of θ₀ are set to zero and stay exactly zero. Here the
cut is **per layer**: each weight tensor loses ⌊s·n⌋ of its n entries (the smallest
|θ₀|, ties to the lower index), as the paper's per-layer thresholds do. A global
cut would treat layers of different scales unequally — a layer whose weights are
all small (a wide layer with a small init, a pretrained layer with small norms)
could lose nearly everything and disconnect the network — while per layer every
layer keeps the same share. Biases and other one-dimensional parameters are never
pruned. z = the surviving weights and the biases, so noise is generated in the
reduced dimension and its cost falls with s.

Compressed size: per weight tensor a bitmask of its shape plus 4 bytes per
surviving weight; 4 bytes per bias.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec, weight_slices
from hpcars.algorithm.spaces.indexed import IndexedSpace, bitmask_bytes


def prune_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask of the entries kept: all but the ⌊s·n⌋ smallest |w| (ties: lower index pruned first)."""
    mask = np.ones(weights.size, dtype=bool)
    mask[np.argsort(np.abs(weights), kind="stable")[: math.floor(sparsity * weights.size + 1e-9)]] = False
    return mask


class PrunedSpace(IndexedSpace):
    kind = "pruned"

    @classmethod
    def build(cls, spec: ParamSpec, theta0: torch.Tensor, sparsity: float) -> PrunedSpace:
        theta = theta0.detach().cpu().numpy()
        keep = np.ones(spec.size, dtype=bool)
        weights, compressed = 0, 0
        for _, part, is_weight in weight_slices(spec):
            n = part.stop - part.start
            if is_weight:
                keep[part] = prune_mask(theta[part], sparsity)
                weights += n
                compressed += bitmask_bytes(n) + 4 * int(keep[part].sum())
            else:
                compressed += 4 * n
        kept = np.flatnonzero(keep)
        codes = np.full(spec.size, kept.size, dtype=np.int64)
        codes[kept] = np.arange(kept.size)
        info = {
            "searched": int(kept.size),
            "parameters": spec.size,
            "sparsity": float((~keep).sum() / weights),
            "compressed_bytes": compressed,
        }
        z0 = theta0[torch.as_tensor(kept, device=theta0.device)].clone()
        return cls(torch.as_tensor(codes, device=theta0.device), z0, int(kept.size), info)
