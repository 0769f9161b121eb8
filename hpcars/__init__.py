"""hpcars: Augmented Random Search and population random search as MPI batch jobs.

From Python (``docs/python.md``)::

    import hpcars

    result = hpcars.fit(problem, directions=32, top_directions=8)  # a run, as the command line makes it
    ars = hpcars.ARS(num_params=12, directions=6)                   # ask/tell, you evaluate
    hpcars.pin_threads()                                            # one thread per rank, if you want it

and the shapes of your own tasks: ``SupervisedProblem``, ``Objective``,
``ObjectiveContext``. Every name here is imported on first use, so importing hpcars
does nothing but define names: no environment variable, thread count, random state or
plotting backend changes. ``hpcars.__version__`` is the installed distribution's
version, or in a checkout that is not installed, its ``pyproject.toml``'s.

The layers, each a subpackage: ``algorithm`` (noise, the ARS rule, batched branches,
search spaces, ask/tell), ``runtime`` (transport, schedules, messages, agreement,
asynchronous mode), ``tasks``, ``population``, ``run`` (engine, session, checkpoints,
output, signals) and ``cli``; ``errors`` holds every error they raise.
"""

from __future__ import annotations

from typing import Any

#: public name -> the module that defines it
_WHERE = {
    "fit": "hpcars.api",
    "Result": "hpcars.api",
    "ARS": "hpcars.algorithm.ask_tell",
    "check_perturbation": "hpcars.algorithm.perturbation.check",
    "pin_threads": "hpcars.threads",
    "TrainConfig": "hpcars.config",
    "SupervisedProblem": "hpcars.tasks.problems",
    "Objective": "hpcars.tasks.problems",
    "ObjectiveContext": "hpcars.tasks.problems",
    "InputError": "hpcars.errors",
    "ConfigError": "hpcars.errors",
    "CheckpointError": "hpcars.errors",
}

__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from hpcars.version import version

        return version()
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'hpcars' has no attribute {name!r}")
