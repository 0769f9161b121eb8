"""hpcars: Augmented Random Search and population random search as MPI batch jobs.

Public names for your own tasks (``--task package.module:factory``)::

    from hpcars import SupervisedProblem, Objective, ObjectiveContext

They are imported lazily, so ``python -m hpcars.train`` can pin the thread pools
before torch is first imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Objective", "ObjectiveContext", "SupervisedProblem"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hpcars import problems

        return getattr(problems, name)
    raise AttributeError(f"module 'hpcars' has no attribute {name!r}")
