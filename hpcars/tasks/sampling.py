"""Which training samples form an iteration's mini-batch: uniform, or by priority.

Both samplers draw from a CPU ``torch.Generator`` seeded by (run seed, iteration),
so every rank draws the same batch without communicating.

Devices: a sampler lives on the CPU (``SAMPLER_DEVICE``), whatever devices the rank
scores on: its priorities are a NumPy array, ``draw`` returns CPU indices and
weights (the caller copies the weights to each device it scores on), and
``update`` takes indices and losses from any device and brings them to the CPU.

``UniformBatches`` — indices uniform with replacement (the built-in default).

``PrioritizedBatches`` — Prioritized Experience Replay's proportional variant
(Schaul, Quan, Antonoglou & Silver 2016, arXiv 1511.05952) applied to a training
set:

* sample i has priority p_i = |ℓ_i| + ε, where ℓ_i is its most recent loss under
  the unperturbed parameters (after each iteration's step, the losses of the batch
  just used are recomputed with one extra forward pass of θ); a sample never drawn
  keeps the largest priority seen so far (initially 1), so it is drawn soon;
* indices are drawn with replacement with P(i) = p_i^α / Σ_k p_k^α;
* the batch loss weights sample i by w_i = (N·P(i))^−β / max_j w_j (the maximum
  over the batch, as in the paper), β growing linearly from β₀ to 1 over
  ``beta_iterations`` iterations.

The priorities are float64, updated identically on every rank (the extra forward
pass runs on every rank; no data is sent), and saved in checkpoints, so a resume
is bit-exact on any world size. Defaults α = 0.6, β₀ = 0.4 are the paper's for
the proportional variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLER_DEVICE = torch.device("cpu")


@dataclass(frozen=True)
class PriorityParams:
    alpha: float = 0.6  # how strongly priorities shape the draw (0 = uniform)
    beta: float = 0.4  # β₀, importance-sampling correction at iteration 0
    beta_iterations: int = 1000  # β reaches 1 after this many iterations
    eps: float = 1e-6  # keeps every sample drawable


class UniformBatches:
    """Indices uniform with replacement; no weights, no state."""

    def __init__(self, size: int) -> None:
        self.size = size

    def draw(self, generator: torch.Generator, batch: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.randint(self.size, (batch,), generator=generator, device=SAMPLER_DEVICE), None

    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        pass

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        pass


class PrioritizedBatches:
    """Proportional prioritized sampling over a training set of ``size`` samples."""

    def __init__(self, size: int, params: PriorityParams) -> None:
        self.params = params
        self.priorities = np.full(size, np.nan)  # NaN: never drawn yet
        self.max_priority = 1.0

    def effective(self) -> np.ndarray:
        """Every sample's priority; one never drawn counts as the largest seen so far."""
        return np.where(np.isnan(self.priorities), self.max_priority, self.priorities)

    def probabilities(self) -> np.ndarray:
        """P(i) = p_i^α / Σ p^α (float64)."""
        scaled = self.effective() ** self.params.alpha
        return scaled / scaled.sum()

    def beta(self, iteration: int) -> float:
        p = self.params
        return min(1.0, p.beta + (1.0 - p.beta) * iteration / p.beta_iterations)

    def draw(self, generator: torch.Generator, batch: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices [batch] drawn by priority and their importance weights [batch] (float32), on the CPU."""
        probs = self.probabilities()
        indices = torch.multinomial(torch.from_numpy(probs), batch, replacement=True, generator=generator)
        chosen = probs[indices.cpu().numpy()]
        weights = (len(probs) * chosen) ** -self.beta(iteration)
        return indices, torch.from_numpy((weights / weights.max()).astype(np.float32))

    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """New priorities |loss| + ε for the samples just used (a repeated index gets its one loss);
        ``indices`` and ``losses`` may be on any device."""
        values = np.abs(losses.detach().to(SAMPLER_DEVICE, torch.float64).numpy()) + self.params.eps
        self.priorities[indices.detach().to(SAMPLER_DEVICE).numpy()] = values
        self.max_priority = max(self.max_priority, float(values.max()))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"priorities": self.priorities.copy(), "max_priority": np.asarray(self.max_priority, dtype=np.float64)}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        priorities = np.asarray(arrays["priorities"], dtype=np.float64)
        if priorities.shape != self.priorities.shape:
            raise ValueError(f"priorities for {priorities.size} samples, this training set has {self.priorities.size}")
        self.priorities = priorities.copy()
        self.max_priority = float(arrays["max_priority"])
