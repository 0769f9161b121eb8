"""Perturbation directions regenerated from common seeds (no noise table, nothing sent).

Every rank needs direction δ_k of iteration j (of population member m) to evaluate
its branches and to apply the update. Instead of shipping noise, or a 1-2 GB shared
noise table as the ARS and OpenAI ES reference code do, each rank recomputes δ from
the tuple (run seed, j, m, k) with a counter-based generator.

The integer part (all arithmetic on unsigned 64-bit integers, modulo 2**64), shared by
every scheme:

* ``mix(x)`` is the SplitMix64 finaliser (Steele, Lea & Flood 2014):
  ``x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb;
  x ^= x >> 31``.
* The stream key of a direction folds its coordinates into one word:
  ``h = mix(seed ^ TAG)`` and then ``h = mix(h + GAMMA * (v + 1))`` for each
  ``v`` in ``(j, m, k)``, with ``GAMMA = 0x9e3779b97f4a7c15`` (the golden ratio).
* Entry pair ``p`` (entries ``2p`` and ``2p + 1``) of the direction uses the word
  ``z = mix(h + GAMMA * (p + 1))``.

Two schemes turn a word into two standard normal entries (Box–Muller); a checkpoint
records which one its run used (``scheme``), and a resumed run keeps it:

* ``splitmix64-boxmuller/1``: ``u1 = (hi32 + 1) / 2**32`` in (0, 1] from the high 32
  bits, ``u2 = lo32 / 2**32`` in [0, 1) from the low 32; in float64,
  ``sqrt(-2 ln u1) * cos(2π u2)`` for entry ``2p`` and ``... * sin(2π u2)`` for ``2p + 1``,
  then rounded to the parameter dtype. Runs made before version 2 used it.
* ``splitmix64-boxmuller24/2`` (the default): ``u1 = ((z >> 40) + 1) / 2**24`` from the top
  24 bits, ``u2 = ((z >> 16) & 0xffffff) / 2**24`` from the next 24 (both exact in float32),
  ``r = sqrt(-2 ln u1)`` and ``θ = u2 · (2π / 2**24 rounded to float32)`` in float32. The
  entries come in blocks of at most ``CHUNK`` pairs: the block of pairs ``[f, f + n)``
  fills entries ``[2f, 2f + 2n)`` with its n values ``r cos θ`` followed by its n values
  ``r sin θ``. Tails end at 5.8σ instead of 6.7σ. Several times faster than scheme 1: no
  float64, and every pass runs over cache-sized buffers that are reused.

The integer part uses only wrapping int64 multiply, add, xor, shift and mask, so its
bits are identical on every rank and on every device type (CPU or CUDA); the tests
check them against an independent NumPy ``uint64`` implementation. The floating-point
step is computed on the device that asks; ranks that run on the same device type
therefore get bitwise identical directions, and so does the parameter update that
every rank applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hpcars.errors import CheckpointError

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MUL1 = 0xBF58476D1CE4E5B9
MUL2 = 0x94D049BB133111EB
TAG = 0x68706361727321  # "hpcars!" — separates hpcars streams from other SplitMix users

SCHEME_1 = "splitmix64-boxmuller/1"
SCHEME_2 = "splitmix64-boxmuller24/2"
SCHEMES = (SCHEME_1, SCHEME_2)
DEFAULT_SCHEME = SCHEME_2
CHUNK = 1 << 15  # pairs per elementwise pass of scheme 2: a few hundred KB, in cache (a multiple of 16)
ALIGN = 2 * CHUNK  # entries: a direction can be drawn in column blocks that start at multiples of this


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


def _mix64_(x: torch.Tensor) -> torch.Tensor:
    """``_mix64_tensor`` in place (the same bits, no temporaries beyond one shift)."""
    x ^= _shr(x, 30)
    x *= _signed(MUL1)
    x ^= _shr(x, 27)
    x *= _signed(MUL2)
    x ^= _shr(x, 31)
    return x


def pair_words(keys: torch.Tensor, pairs: int, first: int = 0) -> torch.Tensor:
    """The 64-bit words (as int64) of entry pairs ``first .. first + pairs - 1`` for each key: [len(keys), pairs]."""
    p = torch.arange(first + 1, first + pairs + 1, dtype=torch.int64, device=keys.device)
    return _mix64_(keys[:, None] + p[None, :] * _signed(GAMMA))


def gaussian_from_words(words: torch.Tensor, size: int) -> torch.Tensor:
    """Scheme 1's Box–Muller in float64: [D, pairs] words -> [D, size] standard normal entries."""
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
    """Regenerates perturbation directions of one run from its seed, by ``scheme``."""

    seed: int
    scheme: str = DEFAULT_SCHEME

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise CheckpointError(
                f"noise scheme {self.scheme!r} is unknown to this hpcars (known: {', '.join(SCHEMES)})"
            )

    def directions(
        self,
        iteration: int,
        member: int,
        indices: Sequence[int],
        size: int,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        entries: slice | None = None,
    ) -> torch.Tensor:
        """Directions ``indices`` of (iteration, member), shape [len(indices), size] — or only their
        ``entries`` [start, stop) (start a multiple of ``ALIGN``, stop one too or ``size``): the same
        bits as those columns of the whole, for a caller that cannot hold whole directions."""
        start, stop = (0, size) if entries is None else (entries.start or 0, min(entries.stop, size))
        if start % ALIGN or (stop % ALIGN and stop != size):
            raise ValueError(f"entries [{start}, {stop}) are not aligned to blocks of {ALIGN}")
        pairs = padded_pairs(size)
        first, last = start // 2, pairs if stop == size else stop // 2
        if self.scheme == SCHEME_1:
            keys = [_signed(stream_key(self.seed, iteration, member, int(k))) for k in indices]
            words = pair_words(torch.tensor(keys, dtype=torch.int64, device=device), last - first, first)
            return gaussian_from_words(words, stop - start).to(dtype)
        keys = [stream_key(self.seed, iteration, member, int(k)) for k in indices]
        out = self._scheme2(keys, pairs, device, first, last)[:, : stop - start]
        return out if dtype == torch.float32 else out.to(dtype)

    def _scheme2(
        self, keys: list[int], pairs: int, device: torch.device | str, first_pair: int, last_pair: int
    ) -> torch.Tensor:
        """Scheme 2's pairs [first_pair, last_pair) of a direction of ``pairs`` pairs: [D, 2·(last − first)]
        float32, in blocks of at most ``CHUNK`` pairs (each block's cosines, then its sines),
        computed in reused cache-sized buffers."""
        out = torch.empty(len(keys), 2 * (last_pair - first_pair), dtype=torch.float32, device=device)
        block = min(pairs, CHUNK)
        rows = max(1, CHUNK // pairs) if pairs <= CHUNK else 1  # short directions: several per pass
        steps = torch.arange(1, block + 1, dtype=torch.int64, device=device) * _signed(GAMMA)  # GAMMA·(p + 1)
        z, bits = (torch.empty(rows, block, dtype=torch.int64, device=device) for _ in range(2))
        radius, angle, part = (torch.empty(rows, block, dtype=torch.float32, device=device) for _ in range(3))
        for top in range(0, len(keys), rows):
            ids = range(top, min(top + rows, len(keys)))
            for first in range(first_pair, last_pair, block):
                n = min(block, pairs - first)
                at = 2 * (first - first_pair)
                offsets = [_signed(keys[d] + GAMMA * first) for d in ids]
                _pairs_into(z[: len(ids), :n], bits[: len(ids), :n], steps[:n], offsets)
                _box_muller24(
                    z[: len(ids), :n],
                    bits[: len(ids), :n],
                    radius[: len(ids), :n],
                    angle[: len(ids), :n],
                    part[: len(ids), :n],
                    out[ids.start : ids.stop, at : at + 2 * n],
                )
        return out


def _pairs_into(z: torch.Tensor, bits: torch.Tensor, steps: torch.Tensor, offsets: list[int]) -> None:
    """z[d, p] = mix(key_d + GAMMA·(first + p + 1)) in place (``offsets``: key_d + GAMMA·first)."""
    torch.add(steps, torch.tensor(offsets, dtype=torch.int64, device=z.device)[:, None], out=z)
    for shift, multiplier in ((30, MUL1), (27, MUL2), (31, 0)):
        torch.bitwise_right_shift(z, shift, out=bits)
        z.bitwise_xor_(bits.bitwise_and_((1 << (64 - shift)) - 1))  # a logical shift
        if multiplier:
            z.mul_(_signed(multiplier))


def _box_muller24(
    z: torch.Tensor,
    bits: torch.Tensor,
    radius: torch.Tensor,
    angle: torch.Tensor,
    part: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """Scheme 2's Box–Muller in float32: out[:, :n] = r cos θ, out[:, n:] = r sin θ (n = z's width).
    Every operation runs on contiguous buffers (the same kernel whatever the batch), then is copied."""
    n = z.shape[1]
    torch.bitwise_right_shift(z, 40, out=bits)
    radius.copy_(bits.bitwise_and_(0xFFFFFF)).add_(1.0).mul_(2.0**-24)  # u1 in (0, 1]
    radius.log_().mul_(-2.0).sqrt_()
    torch.bitwise_right_shift(z, 16, out=bits)
    angle.copy_(bits.bitwise_and_(0xFFFFFF)).mul_(2.0 * torch.pi * 2.0**-24)  # 2π u2
    out[:, :n].copy_(torch.cos(angle, out=part).mul_(radius))
    out[:, n:].copy_(torch.sin(angle, out=part).mul_(radius))
