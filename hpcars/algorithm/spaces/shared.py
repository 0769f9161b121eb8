"""Weight sharing: ARS searches each layer's codebook of 2^bits centroids.

Deep Compression's second stage (Han, Mao & Dally 2016, arXiv 1510.00149): the
weights of each layer are clustered by k-means (k = 2^bits, *linear*
initialisation — centroids evenly spaced between the layer's smallest and largest
weight, which the paper found best because it keeps the rare large weights) and
every weight is replaced by its centroid. The model's weight i of layer l is then
``codebook_l[index_i]``: z holds the codebooks and the (unshared) biases, and the
forward pass uses the shared weights, so the objective ARS searches is the
compressed model's. With ``--sparsity s`` the layer is pruned first (``pruned``) and
only the surviving weights are clustered; pruned weights stay exactly 0 — the
paper's pipeline.

k-means is Lloyd's algorithm in float64 on θ₀'s weights (1-D: nearest centroid by
midpoints), until no assignment changes (at most 300 rounds); an empty cluster
keeps its centroid. Compressed size: per layer 4 bytes per centroid plus ``bits``
bits per (surviving) weight, plus a bitmask when pruned; 4 bytes per bias.
"""

from __future__ import annotations

import numpy as np
import torch

from hpcars.algorithm.branches import ParamSpec, weight_slices
from hpcars.algorithm.spaces.indexed import IndexedSpace, bitmask_bytes
from hpcars.algorithm.spaces.pruned import prune_mask


def kmeans_1d(values: np.ndarray, k: int, rounds: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [k'] ascending, index of each value's centroid) with linear initialisation."""
    values = values.astype(np.float64)
    k = min(k, values.size)
    centroids = np.linspace(values.min(), values.max(), k) if k > 1 else np.array([values.mean()])
    assign = np.zeros(values.size, dtype=np.int64)
    for _ in range(rounds):
        new = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
        counts = np.bincount(new, minlength=k)
        sums = np.bincount(new, weights=values, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.array_equal(new, assign):
            break
        assign = new
    return centroids, assign


class SharedSpace(IndexedSpace):
    kind = "shared"

    @classmethod
    def build(cls, spec: ParamSpec, theta0: torch.Tensor, bits: int, sparsity: float = 0.0) -> SharedSpace:
        theta = theta0.detach().cpu().numpy().astype(np.float64)
        codes = np.full(spec.size, -1, dtype=np.int64)
        z_parts: list[np.ndarray] = []
        offset, compressed, weights, pruned = 0, 0, 0, 0
        for _, part, is_weight in weight_slices(spec):
            values = theta[part]
            if not is_weight:  # a bias: its own coordinates of z
                codes[part] = offset + np.arange(values.size)
                z_parts.append(values)
                offset += values.size
                compressed += 4 * values.size
                continue
            mask = prune_mask(values, sparsity)
            centroids, assign = kmeans_1d(values[mask], 2**bits)
            layer = np.full(values.size, -1, dtype=np.int64)
            layer[mask] = offset + assign
            codes[part] = layer
            z_parts.append(centroids)
            offset += centroids.size
            weights += values.size
            pruned += int((~mask).sum())
            compressed += 4 * centroids.size + (int(mask.sum()) * bits + 7) // 8
            compressed += bitmask_bytes(values.size) if sparsity > 0 else 0
        codes[codes < 0] = offset  # pruned weights: the trailing zero
        info = {
            "searched": offset,
            "parameters": spec.size,
            "bits": bits,
            "sparsity": pruned / weights,
            "compressed_bytes": compressed,
        }
        z0 = torch.as_tensor(np.concatenate(z_parts), dtype=torch.float32, device=theta0.device)
        return cls(torch.as_tensor(codes, device=theta0.device), z0, offset, info)
