"""Independent NumPy references for the tests: the noise scheme and ARS Algorithm 2.

Written from the module docstrings (noise.py) and the paper, with NumPy uint64
arithmetic instead of torch int64, so the engine is checked against a second
implementation rather than against itself.
"""

from __future__ import annotations

import numpy as np

M = np.uint64
GAMMA, MUL1, MUL2 = M(0x9E3779B97F4A7C15), M(0xBF58476D1CE4E5B9), M(0x94D049BB133111EB)
TAG = 0x68706361727321
CHUNK = 1 << 15  # scheme 2's block of pairs


def mix(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> M(30))) * MUL1
        x = (x ^ (x >> M(27))) * MUL2
    return x ^ (x >> M(31))


def key(seed: int, iteration: int, member: int, direction: int) -> np.uint64:
    h = mix(np.uint64(seed ^ TAG))
    with np.errstate(over="ignore"):
        for v in (iteration, member, direction):
            h = mix(h + GAMMA * M(v + 1))
    return h


def words(seed: int, iteration: int, member: int, direction: int, pairs: int) -> np.ndarray:
    p = np.arange(1, pairs + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix(key(seed, iteration, member, direction) + p * GAMMA)


def direction(seed: int, iteration: int, member: int, k: int, size: int) -> np.ndarray:
    """Scheme 2 (``splitmix64-boxmuller24/2``, the default): 24-bit uniforms, Box–Muller in float32."""
    pairs = -(-((size + 1) // 2) // 16) * 16  # generated pairs: rounded up to a multiple of 16
    w = words(seed, iteration, member, k, pairs)
    u1 = ((w >> M(40)).astype(np.float32) + np.float32(1.0)) * np.float32(2.0**-24)
    theta = ((w >> M(16)) & M(0xFFFFFF)).astype(np.float32) * np.float32(2.0 * np.pi * 2.0**-24)
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    blocks = [np.arange(f, min(f + CHUNK, pairs)) for f in range(0, pairs, CHUNK)]
    return np.concatenate([np.concatenate((r[b] * np.cos(theta[b]), r[b] * np.sin(theta[b]))) for b in blocks])[:size]


def direction_v1(seed: int, iteration: int, member: int, k: int, size: int) -> np.ndarray:
    """Scheme 1 (``splitmix64-boxmuller/1``, runs made before it changed): 32-bit uniforms, float64."""
    w = words(seed, iteration, member, k, (size + 1) // 2)
    u1 = ((w >> M(32)).astype(np.float64) + 1.0) * 2.0**-32
    u2 = (w & M(0xFFFFFFFF)).astype(np.float64) * 2.0**-32
    r = np.sqrt(-2.0 * np.log(u1))
    out = np.stack((r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)), axis=-1).reshape(-1)
    return out[:size].astype(np.float32)


def ars_iteration(theta, reward_fn, *, seed, iteration, alpha, nu, n, b):
    """One iteration of ARS (Algorithm 2, V1/V1-t) in float64, exact-b by max(r+, r−)."""
    deltas = np.stack([direction(seed, iteration, 0, k, theta.size) for k in range(n)])
    plus = theta.astype(np.float32) + np.float32(nu) * deltas
    minus = theta.astype(np.float32) - np.float32(nu) * deltas
    r_plus = np.array([reward_fn(p) for p in plus])
    r_minus = np.array([reward_fn(m) for m in minus])
    score = np.maximum(r_plus, r_minus)
    kept = sorted(range(n), key=lambda k: (-score[k], k))[:b]
    sigma = np.concatenate((r_plus[kept], r_minus[kept])).std()
    step = sum((r_plus[k] - r_minus[k]) * deltas[k].astype(np.float64) for k in kept)
    return (theta.astype(np.float64) + alpha / (b * sigma) * step).astype(np.float32)
