"""Task registry: ``--task NAME`` -> a constructor."""

from __future__ import annotations

from hpcars.tasks.base import BranchOutcome, Task
from hpcars.tasks.supervised import Digits, Regression

TASKS = {"regression": Regression, "digits": Digits}


def make_task(name: str, seed: int, batch_size: int, hidden: int) -> Task:
    if name == "regression":
        return Regression(seed, batch_size or 2048)
    if name == "digits":
        return Digits(seed, batch_size or 256, hidden)
    raise KeyError(name)


__all__ = ["TASKS", "BranchOutcome", "Task", "make_task"]
