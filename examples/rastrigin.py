"""A black-box objective: ARS on the 10-dimensional Rastrigin function, observed with noise.

    mpirun -n 2 python -m hpcars.train --task examples.rastrigin:objective --iterations 300 --step-size 0.05

``fn`` scores a whole stack of parameter vectors at once; the noise comes from
``context.seed``, the same for every branch of an iteration and every rank, so
the run is reproducible and the branches are compared on common random numbers.
"""

import math

import torch

from hpcars import Objective


def objective():
    def fn(thetas, context):
        value = 10 * thetas.shape[1] + (thetas**2 - 10 * torch.cos(2 * math.pi * thetas)).sum(dim=1)
        noise = torch.randn(1, generator=torch.Generator().manual_seed(context.seed))
        return -(value + 0.1 * noise)  # ARS maximises: minus the function

    def evaluate(theta):
        return -float(10 * theta.numel() + (theta**2 - 10 * torch.cos(2 * math.pi * theta)).sum())

    return Objective(size=10, fn=fn, init=torch.full((10,), 2.5), evaluate=evaluate)
