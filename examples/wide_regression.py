"""A regression plug-in with a wide MLP (10⁶ parameters at ``--hidden 1000``): learn a fixed random
teacher network from 32 inputs, mean squared error, held-out set of its own.

    python -m hpcars.train --task examples.wide_regression:problem --hidden 1000 --perturbation lowrank

The data and the teacher come from a fixed seed (the same on every rank and every run); the
student is initialised from the run's seed (``hpcars.tasks.plugin`` runs factories in a forked
torch RNG seeded from it). ``bench/lowrank_samples.py`` uses it to measure what low-rank
perturbations cost in samples against dense ones on a model of this size.
"""

import torch
from torch import nn

from hpcars import SupervisedProblem

INPUTS, TRAIN, TEST = 32, 8192, 2048


def teacher_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(20251203)
    x = torch.randn(TRAIN + TEST, INPUTS, generator=g)
    w1 = torch.randn(INPUTS, 64, generator=g) / INPUTS**0.5
    w2 = torch.randn(64, 1, generator=g) / 64**0.5
    return x, torch.tanh(x @ w1) @ w2


def problem(config):
    x, y = teacher_data()
    h = config.hidden
    model = nn.Sequential(nn.Linear(INPUTS, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))
    return SupervisedProblem(
        model=model,
        train=(x[:TRAIN], y[:TRAIN]),
        test=(x[TRAIN:], y[TRAIN:]),
        loss="mse",
        batch_size=256,
        name="wide_regression",
    )
