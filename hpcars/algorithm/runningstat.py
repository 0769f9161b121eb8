"""Mergeable running mean / variance in float64 (ARS V2 state normalisation).

State ``(count, mean, M2)`` per coordinate; two states merge with the parallel
variance formula of Chan, Golub & LeVeque (1979):

    n = n_a + n_b,  d = mean_b − mean_a,
    mean = mean_a + d · n_b / n,   M2 = M2_a + M2_b + d² · n_a · n_b / n.

Merging is exact in real arithmetic but not associative in floating point, so a
caller that needs bitwise agreement across world sizes must merge the same parts
in the same order on every rank (the trainer merges per-iteration parts in a fixed
order). The standard deviation used for normalisation has a floor: a coordinate whose
std is below ``STD_FLOOR`` is treated as constant and normalised to 0, as the ARS
reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STD_FLOOR = 1e-7


@dataclass(frozen=True)
class RunningStat:
    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> RunningStat:
        return cls(0.0, np.zeros(dim), np.zeros(dim))

    @classmethod
    def of(cls, samples: np.ndarray) -> RunningStat:
        """The statistics of a [n, dim] batch."""
        x = np.asarray(samples, dtype=np.float64)
        if x.shape[0] == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        return cls(float(x.shape[0]), mean, ((x - mean) ** 2).sum(axis=0))

    def merge(self, other: RunningStat) -> RunningStat:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return RunningStat(n, mean, m2)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation (ones before any sample is seen)."""
        if self.count == 0:
            return np.ones_like(self.mean)
        return np.sqrt(self.m2 / self.count)

    def normaliser(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, inverse std) for x ↦ (x − mean) · inv_std; inv_std = 0 below the floor."""
        std = self.std
        inv = np.where(std < STD_FLOOR, 0.0, 1.0 / np.maximum(std, STD_FLOOR))
        return self.mean.copy(), inv
