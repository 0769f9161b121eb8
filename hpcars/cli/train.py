"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

Exit status: 0 done; 2 bad input or an unusable checkpoint (one line on stderr,
from rank 0; nothing saved is touched); 3 ranks diverged (the guard tripped);
75 stopped by SIGTERM/SIGUSR1/SIGUSR2 after writing a checkpoint (run the same
command, or ``--resume RUN_DIR``, to continue); 1 any other failure. With more than
one rank an unexpected error on one rank aborts the whole MPI job instead of
leaving the others waiting in a collective.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from hpcars.cli.options import parse_args
from hpcars.errors import CheckpointError, ConfigError, DivergenceError, NonFiniteRewardError, Refused
from hpcars.run.loop import RunResult, run
from hpcars.run.signals import EXIT_INTERRUPTED, StopRequest
from hpcars.runtime.agreement import agree
from hpcars.runtime.comm import Transport, make_transport
from hpcars.threads import pin_threads

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


@dataclass(frozen=True)
class Outcome:
    """How a command-line run ended: its exit status, the result (None unless it trained or
    was finished already) and the one-line error shown for a failure ("" otherwise)."""

    status: int
    result: RunResult | None = None
    error: str = ""


def execute(argv: Sequence[str] | None, transport: Transport, stop: StopRequest) -> Outcome:
    """Parse ``argv`` and run it on every rank of ``transport``, mapping failures to exit statuses.

    Refusals of the input are agreed on by all ranks (``hpcars.runtime.agreement``), so every rank
    returns status 2 together; an unexpected error on one rank of several aborts the MPI job
    rather than leave the others waiting in a collective."""
    lead = transport.rank == 0

    def fail(err: Exception, status: int) -> Outcome:
        if lead:
            print(f"hpcars.train: error: {err}", file=sys.stderr, flush=True)
        return Outcome(status, error=str(err))

    try:
        cfg = agree(transport, lambda: parse_args(argv))
        if cfg.replay:
            from hpcars.run.replay import replay_run

            return Outcome(replay_run(cfg, transport, sys.stdout))
        result = run(cfg, transport, stop=stop)
    except SystemExit as done:  # --help
        return Outcome(int(done.code or 0))
    except (ConfigError, CheckpointError, Refused) as err:
        return fail(err, EXIT_BAD_INPUT)
    except DivergenceError as err:
        fail(err, EXIT_DIVERGED)
        if transport.size > 1:  # in the asynchronous mode the other ranks are not waiting for this
            transport.abort(EXIT_DIVERGED)
        return Outcome(EXIT_DIVERGED, error=str(err))
    except NonFiniteRewardError as err:
        return fail(err, 1)
    except BaseException as err:
        if transport.size > 1:
            # The other ranks may be waiting in a collective: take the whole job down.
            print(f"hpcars.train: rank {transport.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            transport.abort(1)
        raise
    return Outcome(EXIT_INTERRUPTED if result.interrupted_by else 0, result)


def main(argv: Sequence[str] | None = None, transport: Transport | None = None) -> int:
    """The command line; returns the exit status. ``transport`` defaults to MPI (or one
    process); tests pass ``SingleProcess()`` to run it in process."""
    pin_threads()
    stop = StopRequest().install()
    try:
        return execute(argv, transport or make_transport(), stop).status
    finally:
        stop.uninstall()


if __name__ == "__main__":
    sys.exit(main())
