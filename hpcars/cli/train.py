"""``mpirun -n K python -m hpcars.train [options]``: train with ARS on every rank.

Exit status: 0 done; 2 bad input or an unusable checkpoint (one line on stderr,
from rank 0; nothing saved is touched); 3 ranks diverged (the guard tripped);
75 stopped by SIGTERM/SIGUSR1/SIGUSR2 after writing a checkpoint (run the same
command, or ``--resume RUN_DIR``, to continue); 1 any other failure. With more than
one rank an unexpected error on one rank aborts the whole MPI job instead of
leaving the others waiting in a collective.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hpcars.cli.options import parse_args
from hpcars.config import ConfigError, TrainConfig
from hpcars.run.checkpoint import BestPolicy, CheckpointError
from hpcars.run.console import console
from hpcars.run.engine import ARSTrainer, DivergenceError, IterationRecord, NonFiniteRewardError
from hpcars.run.session import Session
from hpcars.run.signals import EXIT_INTERRUPTED, StopRequest
from hpcars.runtime.agreement import Refused, agree
from hpcars.runtime.comm import Transport, make_transport
from hpcars.tasks import TaskSource, make_task
from hpcars.threads import pin_threads

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


@dataclass(frozen=True)
class RunResult:
    trainer: ARSTrainer
    run_dir: Path
    interrupted_by: int  # the stop signal's number; 0 when the run reached its end
    best: BestPolicy | None = None  # the best evaluation's parameters (every rank holds them)


#: called with every iteration's record (on every rank); returning ``False`` ends the run there
Callback = Callable[[IterationRecord], object]


def run(
    cfg: TrainConfig,
    transport: Transport,
    out: TextIO | None = None,
    stop: StopRequest | None = None,
    task_source: TaskSource = make_task,
    callback: Callback | None = None,
    prog: str = "hpcars.train",
) -> RunResult:
    """Train per ``cfg`` (fresh or resumed); rank 0 writes the run directory and prints to
    ``out`` (default: the current ``sys.stdout``). A run with nothing left to train is not
    trained again: its summary is printed (and written, if it was missing).

    ``callback(record)`` runs after every iteration on every rank; when it returns ``False``
    on any rank, every rank ends the run after that iteration as if it were the last (a final
    evaluation, a checkpoint, ``summary.json``). Not with ``--schedule async``."""
    if callback is not None and cfg.schedule == "async":
        raise ConfigError("callback", "not with --schedule async (its ranks do not end iterations together)")
    stop = stop or StopRequest()
    with console(out or sys.stdout, sys.stderr, cfg.verbosity, transport.rank, transport.size, prog):
        return _train(cfg, transport, stop, task_source, callback)


def _train(
    cfg: TrainConfig, transport: Transport, stop: StopRequest, task_source: TaskSource, callback: Callback | None
) -> RunResult:
    with Session(cfg, transport, task_source) as session:
        trainer = session.trainer
        if session.done_summary is not None:
            session.print_done()
            return RunResult(trainer, session.run_dir, 0, session.best)
        session.banner()
        if trainer.iteration == 0:
            session.initial_eval = trainer.evaluate()
            session.say("iter     0  " + "  ".join(f"{k} {v:.4g}" for k, v in session.initial_eval.items()))
        else:
            session.say(f"resumed at iteration {trainer.iteration} (world sizes so far: {session.world_sizes})")

        if session.ended:  # the last checkpoint is the end, but summary.json was not written for it
            session.say(f"nothing left to train ({session.ended}): the summary is written from the last checkpoint")
            last_eval, interrupted = trainer.evaluate(), 0
        elif cfg.schedule == "async":
            from hpcars.runtime.asynchronous import AsyncLoop

            loop = AsyncLoop(session, stop)
            interrupted = loop.run()
            trainer.guard()  # every rank left the loop at the same update: they must agree
            last_eval = loop.final_evaluation()
            session.save()
        else:
            last_eval, interrupted = _synchronous(session, stop, session.initial_eval, callback)
            if session.last_checkpoint != trainer.iteration:
                trainer.guard()
                session.save()
        if session.lead:
            session.finish(last_eval, interrupted)
        return RunResult(trainer, session.run_dir, interrupted, session.best)


def _synchronous(
    session: Session, stop: StopRequest, last_eval: dict[str, float], callback: Callback | None = None
) -> tuple[dict[str, float], int]:
    """Iterations in lockstep until the end, the target, a stop signal or the callback's
    ``False``: (last evaluation, signal)."""
    cfg, trainer, transport = session.cfg, session.trainer, session.transport
    while trainer.iteration < cfg.iterations:
        received_before = transport.bytes_moved
        record = trainer.step()
        budget = cfg.max_episodes and trainer.total_episodes + trainer.episodes_per_iteration > cfg.max_episodes
        last = trainer.iteration == cfg.iterations or bool(budget)
        if (cfg.eval_every and trainer.iteration % cfg.eval_every == 0) or last:
            last_eval = trainer.evaluate()
            record = dataclasses.replace(record, eval=last_eval)
        stopping = transport.allmax(stop.signum or 0)  # any rank signalled -> all stop here
        save_now = bool(stopping) or trainer.iteration % cfg.checkpoint_every == 0
        if save_now or (cfg.guard_every and trainer.iteration % cfg.guard_every == 0):
            trainer.guard()  # the ranks agree on θ before anything is written
        record = dataclasses.replace(
            record, elapsed_s=session.elapsed(), comm_bytes=transport.bytes_moved - received_before
        )
        newly = session.record(record, print_always=last)
        halt = callback is not None and bool(transport.allmax(int(callback(record) is False)))
        if save_now:
            session.save()
        if stopping:
            return last_eval, stopping
        if newly and cfg.stop_at_target:
            break
        if last:
            break
        if halt:
            if not record.eval:  # the run ends here: its final evaluation
                last_eval = trainer.evaluate()
            break
    return last_eval, 0


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
            from hpcars.runtime.asynchronous import replay_run

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
