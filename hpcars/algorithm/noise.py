"""Perturbation directions regenerated from common seeds (no noise table, nothing sent).

Every rank needs direction δ_k of iteration j (of population member m) to evaluate
its branches and to apply the update. Instead of shipping noise, or a 1-2 GB shared
noise table as the ARS and OpenAI ES reference code do, each rank recomputes δ from
the tuple (run seed, j, m, k) with a counter-based generator.

The scheme (all arithmetic on unsigned 64-bit integers, modulo 2**64):

* ``mix(x)`` is the SplitMix64 finaliser (Steele, Lea & Flood 2014):
  ``x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb;
  x ^= x >> 31``.
* The stream key of a direction folds its coordinates into one word:
  ``h = mix(seed ^ TAG)`` and then ``h = mix(h + GAMMA * (v + 1))`` for each
  ``v`` in ``(j, m, k)``, with ``GAMMA = 0x9e3779b97f4a7c15`` (the golden ratio).
* Entry pair ``p`` (entries ``2p`` and ``2p + 1``) of the direction uses the word
  ``z = mix(h + GAMMA * (p + 1))``.  Its high 32 bits give ``u1 = (hi + 1) / 2**32``
  in (0, 1], its low 32 bits ``u2 = lo / 2**32`` in [0, 1); Box–Muller in float64
  gives ``sqrt(-2 ln u1) * cos(2π u2)`` for entry ``2p`` and ``... * sin(2π u2)`` for
  entry ``2p + 1``, which are then rounded to the parameter dtype.

The integer part uses only wrapping int64 multiply, add, xor, shift and mask, so
its bits are identical on every rank and on every device type (CPU or CUDA); the
tests check them against an independent NumPy ``uint64`` implementation. The
float64 Box–Muller step is computed on the device that asks; ranks that run on the
same device type therefore get bitwise identical directions, and so does the
parameter update that every rank applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
TAG = 0x68706361727321  # "hpcars!" — separates hpcars streams from other SplitMix users


def _signed(x: int) -> int:
    """The int64 value with the same bits as the uint64 value ``x``."""
    x &= MASK64
    return x - (1 << 64) if x >= 1 << 63 else x


def mix64(x: int) -> int:
    """SplitMix64 finaliser on a Python int (exact uint64 arithmetic)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * MUL1) & MASK64
    x = ((x ^ (x >> 27)) * MUL2) & MASK64
    return x ^ (x >> 31)


def stream_key(seed: int, iteration: int, member: int, direction: int) -> int:
    """The uint64 key of direction ``direction`` of ``iteration`` of ``member``."""
    h = mix64(seed ^ TAG)
    for v in (iteration, member, direction):
        h = mix64(h + GAMMA * (v + 1))
    return h


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical (unsigned) right shift of an int64 tensor."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix64_tensor(x: torch.Tensor) -> torch.Tensor:
    x = (x ^ _shr(x, 30)) * _signed(MUL1)
    x = (x ^ _shr(x, 27)) * _signed(MUL2)
    return x ^ _shr(x, 31)


def pair_words(keys: torch.Tensor, pairs: int) -> torch.Tensor:
    """The 64-bit words (as int64) of ``pairs`` entry pairs for each key: [len(keys), pairs]."""
    p = torch.arange(1, pairs + 1, dtype=torch.int64, device=keys.device)
    return _mix64_tensor(keys[:, None] + p[None, :] * _signed(GAMMA))


def gaussian_from_words(words: torch.Tensor, size: int) -> torch.Tensor:
    """Box–Muller in float64: [D, pairs] words -> [D, size] standard normal entries."""
    hi = _shr(words, 32).to(torch.float64)
    lo = (words & 0xFFFFFFFF).to(torch.float64)
    u1 = (hi + 1.0) * 2.0**-32
    theta = lo * (2.0 * torch.pi * 2.0**-32)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    pairs = torch.stack((radius * torch.cos(theta), radius * torch.sin(theta)), dim=-1)
    return pairs.reshape(words.shape[0], -1)[:, :size]


def padded_pairs(size: int) -> int:
    """Pairs generated for ``size`` entries, rounded up to a multiple of 16.

    Vectorised CPU kernels (log, cos, sin) may treat a tensor's last few elements
    with scalar code that rounds differently; with whole blocks of 16 every entry
    takes the same path whatever the number of directions generated together.
    """
    return -(-((size + 1) // 2) // 16) * 16


@dataclass(frozen=True)
class NoiseSource:
    """Regenerates perturbation directions of one run from its seed."""

    seed: int

    def directions(
        self,
        iteration: int,
        member: int,
        indices: Sequence[int],
        size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Directions ``indices`` of (iteration, member), shape [len(indices), size]."""
        keys = [_signed(stream_key(self.seed, iteration, member, int(k))) for k in indices]
        key_tensor = torch.tensor(keys, dtype=torch.int64, device=device)
        words = pair_words(key_tensor, padded_pairs(size))
        return gaussian_from_words(words, size).to(dtype)
