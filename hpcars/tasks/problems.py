"""Bring your own model or objective: the two small shapes a plug-in task can return.

``--task package.module:factory`` imports ``package.module`` and calls ``factory()``
(or ``factory(config)`` when it takes one argument: the run's ``TrainConfig``).
The factory returns one of:

* ``SupervisedProblem`` — a torch model, training data, held-out data, a per-sample
  loss and optionally a metric. ARS's reward is −loss on the iteration's
  mini-batch (or the metric with ``--reward metric``), evaluation reports the
  held-out loss and metric.
* ``Objective`` — a vectorised function of a stack of parameter vectors, for
  problems that are not a model at all.
* a full ``hpcars.tasks.base.Task`` (the protocol the built-in tasks implement).

Before calling the factory hpcars seeds torch's (and NumPy's legacy) global random
generator from the run seed, so a model initialised with the default
initialisers is the same on every rank and for every world size. Everything the
built-in tasks have works for plug-ins unchanged: batched branches, V1 (and its
top-b form V1-t), world-size invariance, checkpoints and resume, populations, sweeps,
analysis. V2 (``--variant v2``) normalises model inputs, so it needs a
``SupervisedProblem`` whose inputs have shape [n, features]; an ``Objective`` has no
inputs and is refused with ``--variant v2`` (as with ``--reward metric`` and
``--batch-priority``, which are for supervised problems), one line, exit 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: Per-sample loss: (outputs [n, ...], targets [n, ...]) -> losses [n]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Per-sample metric, higher is better: (outputs [n, ...], targets [n, ...]) -> scores [n]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES = ("mse", "cross_entropy", "smooth_l1")
METRICS = ("accuracy",)


@dataclass(frozen=True)
class SupervisedProblem:
    """A model and its data; ARS searches the model's parameters.

    * ``model``: any ``nn.Module`` mapping inputs [n, ...] to outputs [n, ...]. Its
      parameters at return are θ₀ (``--init-from`` can replace them); buffers
      (e.g. BatchNorm statistics) are used as they are and never perturbed. It is
      evaluated in ``eval()`` mode.
    * ``train``, ``test``: ``(X, y)`` tensors with samples along dimension 0, or a
      map-style ``torch.utils.data.Dataset`` of ``(x, y)`` pairs (loaded into memory
      once). Without ``test`` the evaluation uses the training set, and says so.
    * ``loss``: ``"mse"``, ``"cross_entropy"``, ``"smooth_l1"``, or a function
      ``(outputs [n, ...], targets [n, ...]) -> per-sample losses [n]``.
    * ``metric``: ``None``, ``"accuracy"`` (argmax of the outputs against integer
      targets), or a function ``(outputs, targets) -> per-sample scores [n]``, higher
      is better; the metric of a batch is their mean. With a metric, the evaluation
      score is the held-out metric, else the held-out −loss.
    * ``batch_size``: the mini-batch of one iteration (``--batch-size`` overrides it).
    """

    model: nn.Module
    train: Any
    test: Any = None
    loss: str | LossFn = "mse"
    metric: str | MetricFn | None = None
    batch_size: int = 256
    name: str = ""


@dataclass(frozen=True)
class ObjectiveContext:
    """What an ``Objective`` is told about the call: the iteration and a seed.

    ``seed`` derives from (run seed, iteration) and is the same for every branch
    (of every population member) in that iteration and on every rank, so a stochastic
    objective that draws its randomness from it compares the branches on common
    random numbers and keeps runs reproducible. Evaluation calls carry
    ``evaluation=True`` and a seed of their own.
    """

    iteration: int
    seed: int
    evaluation: bool = False


@dataclass(frozen=True)
class Objective:
    """A black-box reward of parameter vectors: ARS maximises ``fn``.

    * ``size``: P, the number of parameters.
    * ``fn(thetas, context)``: thetas is a float32 tensor [B, P] on the rank's
      device; returns B rewards (tensor or array), higher is better. It is always
      called in training with exactly min(``--branch-batch``, branches per iteration rounded
      up to a power of two) rows and in evaluation with ``--branch-batch`` rows (a short call
      is padded by repeating a row; those rewards are ignored), so its numerics do not
      depend on how many branches a rank holds.
    * ``init``: θ₀, a tensor [P] (default zeros).
    * ``evaluate``: optional ``(theta [P]) -> float``, the score reported at
      evaluations (default: ``fn`` of θ alone with an evaluation context).
    """

    size: int
    fn: Callable[[torch.Tensor, ObjectiveContext], Any]
    init: torch.Tensor | None = None
    evaluate: Callable[[torch.Tensor], float] | None = None
    name: str = ""
