"""What a run tells its user: lines on the ``hpcars`` logger, and the handler that prints them.

Everything a run says goes through ``logging.getLogger("hpcars")``: rank 0's banner,
progress lines, evaluations and summary at INFO, warnings at WARNING, and with
``--verbose`` every rank's own set-up (its devices, its share of the branches) at DEBUG.
Nothing is printed unless a handler is installed: the command-line tools and
``hpcars.fit`` install one for the run's duration (``console``) and remove it after;
an application that configures ``logging`` itself can leave it to its own handlers
(``hpcars.fit(..., out=None)`` with a handler on the ``hpcars`` logger).

Levels: ``--quiet`` shows warnings and errors only, the default adds INFO, ``--verbose``
adds DEBUG. Lines from ranks other than 0 (only DEBUG ones, by design) carry a
``[rank R/K]`` prefix when the world has more than one rank; warnings go to stderr with
the program's name (``hpcars.train: warning: ...``), the rest to ``out``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

LOGGER = logging.getLogger("hpcars")
LEVELS = {"quiet": logging.WARNING, "normal": logging.INFO, "verbose": logging.DEBUG}


class RankFormatter(logging.Formatter):
    """The message as is on one rank; ``[rank R/K]`` before another rank's lines."""

    def __init__(self, rank: int, size: int, prog: str) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}/{size}] " if size > 1 and rank != 0 else ""
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{self.prog}: {record.levelname.lower()}: {text}"
        return self.prefix + text


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


@contextmanager
def console(out: TextIO, err: TextIO, verbosity: str, rank: int, size: int, prog: str) -> Iterator[None]:
    """Print the ``hpcars`` logger's lines (``out``: below WARNING; ``err``: the rest) while inside."""
    formatter = RankFormatter(rank, size, prog)
    lines = logging.StreamHandler(out)
    lines.addFilter(_Below(logging.WARNING))
    problems = logging.StreamHandler(err)
    problems.setLevel(logging.WARNING)
    for handler in (lines, problems):
        handler.setFormatter(formatter)
        LOGGER.addHandler(handler)
    before = LOGGER.level, LOGGER.propagate
    LOGGER.setLevel(LEVELS[verbosity])
    LOGGER.propagate = False  # these lines are printed here, not again by the application's root handler
    try:
        yield
    finally:
        for handler in (lines, problems):
            LOGGER.removeHandler(handler)
            handler.flush()
        LOGGER.setLevel(before[0])
        LOGGER.propagate = before[1]
