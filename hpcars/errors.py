"""Every error hpcars raises on purpose, in one module that imports nothing of hpcars.

Each layer raises these and the command-line tools map them to exit statuses
(``hpcars.cli.train``): the input ones (``InputError``: ``ConfigError``,
``CheckpointError``, ``PathProblem``, and ``Refused``, which is how a refusal reaches
every rank) to status 2 with their one-line text, ``DivergenceError`` to 3. Keeping
them here lets any module catch any of them without importing the layer that raises
it (and without an import cycle). The modules that raise them re-export them under
their old names, so ``from hpcars.config import ConfigError`` still works.
"""

from __future__ import annotations


class InputError(Exception):
    """Input hpcars refuses (an option, a path, a checkpoint): ``str(err)`` is the one line to
    show; the command line prints it and exits with status 2."""


class ConfigError(InputError, ValueError):
    """A bad option value: ``str(err)`` is the one line shown to the user."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # rank 0 decides and broadcasts refusals: the error must survive pickling
        return (type(self), (self.option, self.message))


class PathProblem(InputError):
    """A path that cannot be used as asked; ``str(err)`` is one line."""


class CheckpointError(InputError):
    """A checkpoint that cannot be used; ``str(err)`` is one line naming the file."""


class HistoryError(Exception):
    """The history file cannot give the rows a checkpoint names; ``str(err)`` is one line."""


class HistoryUnavailable(CheckpointError):
    """The run's ``history.h5`` cannot give the rows a checkpoint names: the run's fault, not the
    checkpoint's (an older checkpoint would meet the same file)."""


class Refused(InputError):
    """Some rank refused the input; ``str(err)`` is the one line to print (the same on every rank)."""

    def __init__(self, message: str, ranks: list[int]) -> None:
        super().__init__(message)
        self.ranks = ranks


class ObjectiveRewardError(ValueError):
    """An objective returned something that is not one finite-or-NaN reward per row."""


class DivergenceError(RuntimeError):
    """Ranks hold different parameters: the run can no longer be trusted."""


class NonFiniteRewardError(RuntimeError):
    """A reward was NaN or infinite and the policy is ``--on-nonfinite fail``."""


class RunInterrupted(RuntimeError):
    """The run stopped on a signal after writing its checkpoint (and was not requeued)."""


class RunRefused(RuntimeError):
    """The run's input was refused (every rank agreed: none is left waiting); the message is the one line."""
