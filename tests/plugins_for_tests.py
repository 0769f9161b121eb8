"""Plug-in task factories used by the tests (``--task tests.plugins_for_tests:NAME``)."""

from __future__ import annotations

import os

import torch
from torch import nn

from hpcars import Objective, SupervisedProblem


def wine_like():
    """A small classification problem built from torch's seeded generator (hpcars seeds it)."""
    x = torch.randn(300, 6)
    w = torch.randn(6, 3)
    y = (x @ w).argmax(dim=1)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return SupervisedProblem(
        model=model,
        train=(x[:240], y[:240]),
        test=(x[240:], y[240:]),
        loss="cross_entropy",
        metric="accuracy",
        batch_size=64,
        name="wine-like",
    )


def regression_with_callable_loss(config):
    """Takes the run's config; a user-defined per-sample loss; no metric."""
    g = torch.Generator().manual_seed(config.seed)
    x = torch.randn(200, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1
    return SupervisedProblem(
        model=nn.Linear(3, 1), train=(x, y), loss=lambda out, t: ((out - t) ** 2).sum(dim=1), batch_size=32
    )


def sphere():
    """A noisy black-box objective: maximise −‖θ − c‖² + noise from the context's seed."""
    center = torch.linspace(-1.0, 1.0, 10)

    def fn(thetas, context):
        g = torch.Generator().manual_seed(context.seed)
        noise = 0.01 * torch.randn(1, generator=g)
        return -((thetas - center) ** 2).sum(dim=1) + noise

    return Objective(size=10, fn=fn, name="sphere")


def wrong_type():
    return 42


def wrong_shape_objective():
    return Objective(size=4, fn=lambda thetas, context: thetas.sum())


def nan_objective():
    return Objective(size=4, fn=lambda thetas, context: thetas.sum(dim=1) * float("nan"))


def misfit_model():
    return SupervisedProblem(model=nn.Linear(5, 2), train=(torch.randn(20, 3), torch.zeros(20, dtype=torch.long)))


def raises():
    raise RuntimeError("the user's factory broke")


def refuses_on_rank_1():
    """Builds the sphere on every MPI rank but 1, where (say) a node-local data file is missing."""
    if os.environ.get("PMI_RANK") == "1":  # MPICH's launcher names each rank's place
        raise FileNotFoundError("no data on this node")
    return sphere()


def fails_at_iteration_2():
    """An objective whose training calls break from iteration 2 on (evaluations still work)."""

    def fn(thetas, context):
        if context.iteration >= 2 and not context.evaluation:
            raise RuntimeError("simulated failure in the objective")
        return -(thetas**2).sum(dim=1)

    return Objective(size=4, fn=fn, name="fails-at-2")


def fixed_wine():
    """``wine_like`` drawn from its own seed, so the same problem can be built in memory
    (``hpcars.fit``) and named on the command line."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        return wine_like()


def tiny_lm(config):
    """Next-token prediction on a repeating pattern with the built-in transformer (low-rank tests)."""
    from torch.nn import functional as F

    from hpcars.algorithm.transformer import Transformer, TransformerConfig

    g = torch.Generator().manual_seed(config.seed)
    starts = torch.randint(0, 7, (96, 1), generator=g)
    ids = (starts + torch.arange(9)) % 7  # 0 1 2 ... 6 0 1 ...: each token predicts the next
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Transformer(TransformerConfig(vocab=7, d_model=16, heads=2, layers=1, d_ff=32, max_len=8))
    return SupervisedProblem(
        model=model,
        train=(ids[:80, :-1], ids[:80, 1:]),
        test=(ids[80:, :-1], ids[80:, 1:]),
        loss=lambda out, t: F.cross_entropy(out.transpose(1, 2), t, reduction="none").mean(dim=1),
        batch_size=16,
        name="tiny-lm",
    )
