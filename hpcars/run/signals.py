"""Stop requests from the batch system, isolated here.

Slurm and submitit signal a job before killing it: SIGTERM (scancel, preemption,
the time limit), SIGUSR1/SIGUSR2 (``--signal``, submitit's warning before the
time limit). The handler only records which signal arrived — no I/O, no MPI — and
the trainer reads ``signum`` once per iteration; the ranks then agree through
one tiny collective (the largest signal number) (any rank asked → all stop) at the same iteration boundary,
write one checkpoint and exit with ``EXIT_INTERRUPTED``.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

#: Exit status after a signal-requested stop with a checkpoint written
#: (75 = EX_TEMPFAIL in sysexits.h: "try again later" — resume with the same command).
EXIT_INTERRUPTED = 75


class StopRequest:
    """Remembers the first stop signal received after ``install``."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        """Put back the handlers that were there before ``install``."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def chain(self, signum: int) -> None:
        """Hand ``signum`` to the handler that was installed before ours — under submitit,
        its requeue logic — once the checkpoint is safely written."""
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
