"""Uniform random numbers that every rank draws identically, without communicating.

``uniforms(seed, stream, iteration, member, count)`` returns ``count`` floats in
[0, 1), each the top 53 bits of ``noise.stream_key(seed ^ stream, iteration, member,
k)``. A decision made from them (accept a step, pick a clone's parent) is therefore
the same on every rank and on resume, and does not depend on the world size.
"""

from __future__ import annotations

import numpy as np

from hpcars.algorithm.noise import stream_key

# one stream per kind of decision, so that they are independent of each other
ANNEALING = 0x5A0
SWARM = 0x5B0
TRUNCATION = 0x5C0


def uniforms(seed: int, stream: int, iteration: int, member: int, count: int) -> np.ndarray:
    """``count`` float64 uniforms in [0, 1) for (iteration, member) of one stream."""
    words = [stream_key(seed ^ stream, iteration, member, k) for k in range(count)]
    return np.array([(w >> 11) * 2.0**-53 for w in words], dtype=np.float64)


def member_uniforms(seed: int, stream: int, iteration: int, members: int, count: int) -> np.ndarray:
    """[members, count] uniforms, row m for member m."""
    return np.stack([uniforms(seed, stream, iteration, m, count) for m in range(members)])
