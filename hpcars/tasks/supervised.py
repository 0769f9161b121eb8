"""Supervised tasks: reward = − loss on the iteration's mini-batch.

Every rank draws the same mini-batch for iteration j from a CPU ``torch.Generator``
seeded with ``stream_key(seed ^ DATA_STREAM, j, member, 0)``, so no data is ever
communicated and the batch does not depend on the world size.

* ``regression`` — the seed project's toy problem (after PyTorch's
  ``examples/regression``): y = x·w* + b* with features (x, x², x³, x⁴),
  w* ~ 5·N(0, 1)⁴ and b* ~ 5·N(0, 1) drawn from the run seed, x ~ N(0, 1),
  batch 2048, smooth-L1 loss, a linear model (4 → 1, zero-initialised).
* ``digits`` — scikit-learn's bundled 8×8 digits (1,797 images, no download),
  a fixed 80/20 train/held-out split, a tanh MLP 64 → hidden → 10, cross-entropy
  loss; evaluation reports held-out accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hpcars.branches import BatchedModel
from hpcars.models import mlp
from hpcars.noise import stream_key
from hpcars.runningstat import RunningStat
from hpcars.tasks.base import BranchOutcome, ObsMoments

DATA_STREAM = 0xDA7A
INIT_STREAM = 0x1A17
SPLIT_SEED = 20180307  # fixed digits split: held-out accuracy comparable across seeds


def _generator(seed: int, *coords: int) -> torch.Generator:
    iteration, member, index = (list(coords) + [0, 0, 0])[:3]
    g = torch.Generator(device="cpu")
    g.manual_seed(stream_key(seed, iteration, member, index) & (2**63 - 1))
    return g


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    stat: RunningStat | None = None  # moments of x, for V2


class SupervisedTask:
    """Shared machinery: batched forward on a shared mini-batch, per-branch loss."""

    name = "supervised"
    sample_unit = "samples"
    episodes_per_branch = 0
    input_dim = 0
    eval_units = 1  # the held-out set

    def __init__(
        self,
        seed: int,
        batch_size: int,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        track_obs: bool = True,
    ):
        self.seed = seed
        self.batch_size = batch_size
        self._loss = loss  # (outputs [B, n, out], targets [n, ...]) -> [B]
        self.track_obs = track_obs  # V2 only: V1 needs no input moments

    def sample(self, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Batch:
        batch = self.sample(_generator(self.seed ^ DATA_STREAM, iteration, member))
        stat = RunningStat.of(batch.x.double().numpy()) if self.track_obs else None
        return Batch(batch.x.to(device), batch.y.to(device), stat)

    def rewards(
        self, model: BatchedModel, stack: torch.Tensor, context: Batch, branches: Sequence[int]
    ) -> BranchOutcome:
        n = len(branches)
        loss = self._loss(model(stack, context.x), context.y)[:n]
        stat = context.stat
        # every branch saw the same inputs; merging them once per branch gives the same
        # mean and variance as one copy (each iteration's batch keeps an equal weight)
        obs = (
            None
            if stat is None
            else ObsMoments(np.full(n, stat.count), np.tile(stat.mean, (n, 1)), np.tile(stat.m2, (n, 1)))
        )
        return BranchOutcome(
            rewards=-loss.double().cpu().numpy(), samples=np.full(n, float(context.x.shape[0])), obs=obs
        )

    def heldout_metrics(self, model: BatchedModel, flat: torch.Tensor) -> list[float]:
        raise NotImplementedError

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        return np.array([self.heldout_metrics(model, flat) for _ in units], dtype=np.float64).reshape(len(units), -1)


def _smooth_l1(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(out, y.expand_as(out), reduction="none").flatten(1).mean(dim=1)


def _cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    branches, n, classes = out.shape
    targets = y.repeat(branches)
    return F.cross_entropy(out.reshape(-1, classes), targets, reduction="none").reshape(branches, n).mean(dim=1)


class Regression(SupervisedTask):
    name = "regression"
    degree = 4
    input_dim = 4
    eval_fields = ("eval_loss",)
    eval_columns = ("score", "eval_loss")

    def __init__(self, seed: int, batch_size: int = 2048, track_obs: bool = True) -> None:
        super().__init__(seed, batch_size, _smooth_l1, track_obs)
        g = _generator(seed ^ INIT_STREAM, 0, 0, 1)
        self.w_target = torch.randn(self.degree, 1, generator=g) * 5
        self.b_target = torch.randn(1, generator=g) * 5
        self.heldout = self.sample(_generator(seed ^ INIT_STREAM, 0, 0, 2), 4 * batch_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x**i for i in range(1, self.degree + 1)], dim=1)

    def sample(self, generator: torch.Generator, n: int | None = None) -> Batch:
        x = self.features(torch.randn(n or self.batch_size, generator=generator))
        return Batch(x, x @ self.w_target + self.b_target)

    def build_model(self) -> nn.Module:
        model = nn.Linear(self.degree, 1)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model

    def heldout_metrics(self, model: BatchedModel, flat: torch.Tensor) -> list[float]:
        x, y = self.heldout.x.to(flat.device), self.heldout.y.to(flat.device)
        return [float(_smooth_l1(model.single(flat, x)[None], y)[0])]

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        return {"score": -float(rows[0, 0]), "eval_loss": float(rows[0, 0])}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        def poly(w: list[float], b: float) -> str:
            terms = " ".join(f"{c:+.3f} x^{i}" for i, c in enumerate(w, start=1))
            return f"y = {terms} {b:+.3f}"

        # The learned map is linear in the (possibly normalised) features; report it on
        # the raw features by probing the model, which also covers V2 normalisation.
        probe = torch.cat([torch.zeros(1, self.degree), torch.eye(self.degree)]).to(flat.device)
        out = model.single(flat, probe)[:, 0].double().cpu()
        learned = poly((out[1:] - out[0]).tolist(), float(out[0]))
        target = poly(self.w_target[:, 0].tolist(), float(self.b_target[0]))
        return f"learned: {learned}\n target: {target}"


class Digits(SupervisedTask):
    name = "digits"
    input_dim = 64
    eval_fields = ("eval_loss", "eval_accuracy")
    eval_columns = ("score", "eval_loss", "eval_accuracy")

    def __init__(self, seed: int, batch_size: int = 256, hidden: int = 32, track_obs: bool = True) -> None:
        super().__init__(seed, batch_size, _cross_entropy, track_obs)
        try:
            from sklearn.datasets import load_digits
        except ImportError as err:  # pragma: no cover - depends on the install
            raise RuntimeError("--task digits needs scikit-learn: pip install 'hpcars[data]'") from err
        data = load_digits()
        x = torch.tensor(data.data, dtype=torch.float32) / 16.0
        y = torch.tensor(data.target, dtype=torch.int64)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
        cut = int(0.8 * len(y))
        self.train_x, self.train_y = x[order[:cut]], y[order[:cut]]
        self.test_x, self.test_y = x[order[cut:]], y[order[cut:]]
        self.hidden = hidden

    def sample(self, generator: torch.Generator) -> Batch:
        idx = torch.randint(len(self.train_y), (self.batch_size,), generator=generator)
        return Batch(self.train_x[idx], self.train_y[idx])

    def build_model(self) -> nn.Module:
        g = _generator(self.seed ^ INIT_STREAM, 0, 0, 3)
        model = mlp([self.input_dim, self.hidden, 10])
        with torch.no_grad():
            for p in model.parameters():  # PyTorch's default range, from the run seed
                bound = 1.0 / (p.shape[-1] ** 0.5) if p.dim() > 1 else 0.1
                p.uniform_(-bound, bound, generator=g)
        return model

    def heldout_metrics(self, model: BatchedModel, flat: torch.Tensor) -> list[float]:
        x, y = self.test_x.to(flat.device), self.test_y.to(flat.device)
        out = model.single(flat, x)
        return [float(F.cross_entropy(out, y)), float((out.argmax(dim=1) == y).double().mean())]

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        loss, accuracy = rows[0]
        return {"score": float(accuracy), "eval_loss": float(loss), "eval_accuracy": float(accuracy)}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        accuracy = self.heldout_metrics(model, flat)[1]
        return f"held-out accuracy {accuracy:.3f} on {len(self.test_y)} images"
