"""Supervised tasks: reward = − loss (or the metric) on the iteration's mini-batch.

Every rank draws the same mini-batch for iteration j from a CPU ``torch.Generator``
seeded with ``stream_key(seed ^ DATA_STREAM, j, member, 0)``, so no data is ever
communicated and the batch does not depend on the world size.

Devices: the draw (the sampler, its priorities, the indices) lives on the CPU; a rank
draws an iteration's batch once and copies its x, y and importance weights to each
device that asks (``Batch.to``: a rank with several devices scores branches on each);
the indices stay on the CPU with the sampler. The priority update after the step
takes its own copy on θ's device, never the copy a branch device was given.

* ``ProblemTask`` — any ``SupervisedProblem`` (``hpcars.tasks.problems``): a finite
  training set, mini-batches drawn uniformly or by priority (``sampling``),
  per-sample losses (optionally importance-weighted), a held-out evaluation of the
  loss and the metric. ``--reward metric`` makes the batch metric the reward.
* ``digits`` — scikit-learn's bundled 8×8 digits (1,797 images, no download) as a
  ``SupervisedProblem``: a fixed 80/20 train/held-out split, a tanh MLP 64 →
  hidden → 10, cross-entropy loss, accuracy.
* ``regression`` — the seed project's toy problem (after PyTorch's
  ``examples/regression``): y = x·w* + b* with features (x, x², x³, x⁴),
  w* ~ 5·N(0, 1)⁴ and b* ~ 5·N(0, 1) drawn from the run seed, x ~ N(0, 1),
  batch 2048, smooth-L1 loss, a linear model (4 → 1, zero-initialised). Its data
  is drawn fresh every iteration (an infinite stream), so it has no training set
  to prioritise.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.models import mlp
from hpcars.algorithm.noise import stream_key
from hpcars.algorithm.runningstat import RunningStat
from hpcars.tasks.base import BranchOutcome, ObsMoments
from hpcars.tasks.problems import LOSSES, METRICS, SupervisedProblem
from hpcars.tasks.sampling import PrioritizedBatches, PriorityParams, UniformBatches

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
    indices: torch.Tensor | None = None  # which training samples (finite training sets)
    weights: torch.Tensor | None = None  # importance weights of prioritized batches [n]

    def to(self, device: torch.device) -> Batch:
        """This batch with what a device computes with (x, y, weights) on ``device``; the
        indices stay where the sampler keeps them (the CPU)."""
        weights = None if self.weights is None else self.weights.to(device)
        return Batch(self.x.to(device), self.y.to(device), self.stat, self.indices, weights)


def _batch_moments(stat: RunningStat | None, n: int) -> ObsMoments | None:
    # every branch saw the same inputs; merging them once per branch gives the same
    # mean and variance as one copy (each iteration's batch keeps an equal weight)
    if stat is None:
        return None
    return ObsMoments(np.full(n, stat.count), np.tile(stat.mean, (n, 1)), np.tile(stat.m2, (n, 1)))


# -- per-sample losses and metrics --------------------------------------------------------
def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, y.reshape(out.shape).to(out.dtype), reduction="none").flatten(1).mean(dim=1)


def _smooth_l1_per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(out, y.reshape(out.shape).to(out.dtype), reduction="none").flatten(1).mean(dim=1)


def _cross_entropy_per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.argmax(dim=-1) == y).to(torch.float32)


BUILTIN_LOSSES: dict[str, Callable] = {
    "mse": _mse,
    "smooth_l1": _smooth_l1_per_sample,
    "cross_entropy": _cross_entropy_per_sample,
}
BUILTIN_METRICS: dict[str, Callable] = {"accuracy": _accuracy}
assert set(BUILTIN_LOSSES) == set(LOSSES) and set(BUILTIN_METRICS) == set(METRICS)


def per_branch(fn: Callable, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A per-sample function of one model's outputs applied to B stacked models:
    outputs [B, n, ...] and shared targets [n, ...] -> values [B, n]."""
    branches, n = out.shape[:2]
    targets = y.unsqueeze(0).expand(branches, *y.shape).reshape(branches * n, *y.shape[1:])
    return fn(out.reshape(branches * n, *out.shape[2:]), targets).reshape(branches, n)


class SupervisedTask:
    """Shared machinery: a shared mini-batch per iteration, batched forward, per-branch loss."""

    name = "supervised"
    sample_unit = "samples"
    episodes_per_branch = 0
    input_dim = 0
    eval_units = 1  # the held-out set

    def __init__(self, seed: int, batch_size: int, track_obs: bool = True) -> None:
        self.seed = seed
        self.batch_size = batch_size
        self.track_obs = track_obs  # V2 only: V1 needs no input moments

    def sample(self, generator: torch.Generator, iteration: int) -> Batch:
        raise NotImplementedError

    def draw(self, iteration: int, member: int) -> Batch:
        """The iteration's mini-batch as drawn (on the CPU), with its input moments."""
        batch = self.sample(_generator(self.seed ^ DATA_STREAM, iteration, member), iteration)
        stat = RunningStat.of(batch.x.double().cpu().numpy()) if self.track_obs else None
        return Batch(batch.x, batch.y, stat, batch.indices, batch.weights)

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Batch:
        return self.draw(iteration, member).to(device)

    def example_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The model's input for checks before training: the first rows of iteration 0's batch."""
        return (self.draw(0, 0).x[:4].to(device),)

    def branch_losses(self, model: BatchedModel, stack: Stack, batch: Batch) -> torch.Tensor:
        """Loss of every row of ``stack`` on the batch [B]."""
        raise NotImplementedError

    def rewards(self, model: BatchedModel, stack: Stack, context: Batch, branches: Sequence[int]) -> BranchOutcome:
        n = len(branches)
        reward = -self.branch_losses(model, stack, context)[:n]
        samples = np.full(n, float(context.x.shape[0]))
        return BranchOutcome(reward.double().cpu().numpy(), samples, _batch_moments(context.stat, n))

    def heldout_metrics(self, model: BatchedModel, flat: torch.Tensor) -> list[float]:
        raise NotImplementedError

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        return np.array([self.heldout_metrics(model, flat) for _ in units], dtype=np.float64).reshape(len(units), -1)


def _tensors(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, y) tensors from a pair of tensors/arrays or a map-style Dataset of (x, y)."""
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = (torch.as_tensor(v) for v in data)
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        pairs = [data[i] for i in range(len(data))]
        if not pairs:
            raise ValueError(f"{what} is an empty dataset")
        x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        y = torch.stack([torch.as_tensor(p[1]) for p in pairs])
    else:
        raise ValueError(f"{what} must be (X, y) tensors or a Dataset of (x, y) pairs, got {type(data).__name__}")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{what}: X has {x.shape[0]} samples, y has {y.shape[0]}")
    if x.is_floating_point():
        x = x.to(torch.float32)
    if y.is_floating_point():
        y = y.to(torch.float32)
    return x, y


class ProblemTask(SupervisedTask):
    """A ``SupervisedProblem`` as a task (digits and plug-ins)."""

    def __init__(
        self,
        problem: SupervisedProblem,
        *,
        seed: int,
        batch_size: int = 0,
        track_obs: bool = True,
        reward: str = "loss",
        priority: PriorityParams | None = None,
    ) -> None:
        super().__init__(seed, batch_size or problem.batch_size, track_obs)
        self.problem = problem
        self.name = problem.name
        self.train_x, self.train_y = _tensors(problem.train, "train")
        self.heldout_is_train = problem.test is None
        self.test_x, self.test_y = (
            (self.train_x, self.train_y) if problem.test is None else _tensors(problem.test, "test")
        )
        self.loss_fn = BUILTIN_LOSSES[problem.loss] if isinstance(problem.loss, str) else problem.loss
        metric = problem.metric
        self.metric_fn = BUILTIN_METRICS[metric] if isinstance(metric, str) else metric
        self.metric_name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
        if self.metric_name in ("<lambda>", "loss", "score"):
            self.metric_name = "metric"
        self.reward = reward
        self.input_dim = int(self.train_x.shape[1]) if self.train_x.dim() == 2 else 0
        size = len(self.train_y)
        self.sampler = UniformBatches(size) if priority is None else PrioritizedBatches(size, priority)
        self.eval_fields = ("eval_loss",) + ((f"eval_{self.metric_name}",) if self.metric_fn else ())
        self.eval_columns = ("score", *self.eval_fields)
        self._model = problem.model
        # the last batch drawn, on the CPU, by (iteration, member): every device of a rank,
        # and the priority update, get their copy of this one draw
        self._drawn: tuple[tuple[int, int], Batch] | None = None

    def build_model(self) -> nn.Module:
        return copy.deepcopy(self._model).eval()

    def sample(self, generator: torch.Generator, iteration: int) -> Batch:
        indices, weights = self.sampler.draw(generator, self.batch_size, iteration)
        x, y = self.train_x[indices.to(self.train_x.device)], self.train_y[indices.to(self.train_y.device)]
        return Batch(x, y, indices=indices, weights=weights)

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Batch:
        """The iteration's batch on ``device``: drawn once on the CPU, copied to each device asking."""
        if self._drawn is None or self._drawn[0] != (iteration, member):
            self._drawn = ((iteration, member), self.draw(iteration, member))
        return self._drawn[1].to(device)

    def _per_sample(self, fn: Callable, model: BatchedModel, stack: Stack, batch: Batch) -> torch.Tensor:
        return per_branch(fn, model(stack, batch.x), batch.y)

    def branch_losses(self, model: BatchedModel, stack: Stack, batch: Batch) -> torch.Tensor:
        losses = self._per_sample(self.loss_fn, model, stack, batch)
        if batch.weights is not None:
            losses = losses * batch.weights
        return losses.mean(dim=1)

    def rewards(self, model: BatchedModel, stack: Stack, context: Batch, branches: Sequence[int]) -> BranchOutcome:
        if self.reward == "loss":
            return super().rewards(model, stack, context, branches)
        n = len(branches)
        assert self.metric_fn is not None  # --reward metric without a metric is refused (plugin.problem_task)
        scores = self._per_sample(self.metric_fn, model, stack, context).mean(dim=1)[:n]
        samples = np.full(n, float(context.x.shape[0]))
        return BranchOutcome(scores.double().cpu().numpy(), samples, _batch_moments(context.stat, n))

    def after_step(self, model: BatchedModel, flat: torch.Tensor, iteration: int) -> None:
        """Prioritized batches: the new priorities of this iteration's samples, from
        one forward pass of the unperturbed θ (every rank, identically)."""
        if not isinstance(self.sampler, PrioritizedBatches):
            return
        # the batch the branches were scored on (drawn here if this rank scored none), copied
        # to θ's device: a branch device's copy may be on another device
        batch = self.begin_iteration(iteration, 0, flat.device)
        losses = self.loss_fn(model.single(flat, batch.x), batch.y)
        assert batch.indices is not None  # sample() always says which training samples it drew
        self.sampler.update(batch.indices, losses)
        self._drawn = None  # drawn from the priorities just replaced

    def state_arrays(self) -> dict[str, np.ndarray]:
        return self.sampler.arrays()

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.sampler.load(arrays)
        self._drawn = None  # drawn from other priorities

    def heldout_metrics(self, model: BatchedModel, flat: torch.Tensor) -> list[float]:
        x, y = self.test_x.to(flat.device), self.test_y.to(flat.device)
        out = model.single(flat, x)
        values = [float(self.loss_fn(out, y).double().mean())]
        if self.metric_fn is not None:
            values.append(float(self.metric_fn(out, y).double().mean()))
        return values

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        values = dict(zip(self.eval_fields, (float(v) for v in rows[0]), strict=True))
        score = values[f"eval_{self.metric_name}"] if self.metric_fn is not None else -values["eval_loss"]
        return {"score": score, **values}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        values = self.heldout_metrics(model, flat)
        where = "the training set (no held-out set given)" if self.heldout_is_train else "held-out"
        metric = f" {self.metric_name} {values[1]:.4g}," if self.metric_fn is not None else ""
        return f"{self.name}: {where}{metric} loss {values[0]:.4g} on {len(self.test_y)} samples"


def digits_problem(seed: int, hidden: int = 32) -> SupervisedProblem:
    """scikit-learn's 8×8 digits: fixed 80/20 split, tanh MLP, cross-entropy, accuracy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("--task digits needs scikit-learn: pip install 'hpcars[data]'") from err
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(0.8 * len(y))
    g = _generator(seed ^ INIT_STREAM, 0, 0, 3)
    model = mlp([x.shape[1], hidden, 10])
    with torch.no_grad():
        for p in model.parameters():  # PyTorch's default range, from the run seed
            bound = 1.0 / (p.shape[-1] ** 0.5) if p.dim() > 1 else 0.1
            p.uniform_(-bound, bound, generator=g)
    return SupervisedProblem(
        model=model,
        train=(x[order[:cut]], y[order[:cut]]),
        test=(x[order[cut:]], y[order[cut:]]),
        loss="cross_entropy",
        metric="accuracy",
        batch_size=256,
        name="digits",
    )


# -- the toy regression: an infinite stream ------------------------------------------------
def _smooth_l1(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(out, y.expand_as(out), reduction="none").flatten(1).mean(dim=1)


class Regression(SupervisedTask):
    name = "regression"
    degree = 4
    input_dim = 4
    eval_fields: tuple[str, ...] = ("eval_loss",)
    eval_columns: tuple[str, ...] = ("score", "eval_loss")

    def __init__(self, seed: int, batch_size: int = 2048, track_obs: bool = True) -> None:
        super().__init__(seed, batch_size, track_obs)
        g = _generator(seed ^ INIT_STREAM, 0, 0, 1)
        self.w_target = torch.randn(self.degree, 1, generator=g) * 5
        self.b_target = torch.randn(1, generator=g) * 5
        self.heldout = self.sample(_generator(seed ^ INIT_STREAM, 0, 0, 2), 0, 4 * batch_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x**i for i in range(1, self.degree + 1)], dim=1)

    def sample(self, generator: torch.Generator, iteration: int, n: int | None = None) -> Batch:
        x = self.features(torch.randn(n or self.batch_size, generator=generator))
        return Batch(x, x @ self.w_target + self.b_target)

    def build_model(self) -> nn.Module:
        model = nn.Linear(self.degree, 1)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model

    def branch_losses(self, model: BatchedModel, stack: Stack, batch: Batch) -> torch.Tensor:
        return _smooth_l1(model(stack, batch.x), batch.y)

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
