"""Your own supervised problem in a few lines: scikit-learn's bundled wine data, an MLP.

mpirun -n 2 python -m hpcars.train --task examples.wine:problem --iterations 300
mpirun -n 2 python -m hpcars.train --task examples.wine:problem --reward metric  # optimise accuracy itself
"""

import torch
from sklearn.datasets import load_wine
from torch import nn

from hpcars import SupervisedProblem


def problem(config):
    data = load_wine()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # a fixed split
    train, test = order[:140], order[140:]
    model = nn.Sequential(nn.Linear(13, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 3))
    return SupervisedProblem(
        model=model,
        train=(x[train], y[train]),
        test=(x[test], y[test]),
        loss="cross_entropy",
        metric="accuracy",
        batch_size=64,
    )
