"""The training loop: a run from its first iteration (or a checkpoint) to its end.

``run(cfg, transport)`` opens a ``Session`` (``hpcars.run.session``) and drives it: the
synchronous loop here — an iteration on every rank in lockstep, evaluations, the stop vote,
guards and checkpoints, the callback of ``hpcars.fit`` — or the asynchronous one
(``hpcars.run.asynchronous``). The command line (``hpcars.cli.train``) and ``hpcars.fit``
(``hpcars.api``) both call ``run``; it prints through the ``hpcars`` logger and maps nothing to
exit statuses (that is the callers' business).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hpcars.config import TrainConfig
from hpcars.errors import ConfigError
from hpcars.run.checkpoint import BestPolicy
from hpcars.run.console import console
from hpcars.run.engine import ARSTrainer, IterationRecord
from hpcars.run.session import Session
from hpcars.run.signals import StopRequest
from hpcars.runtime.comm import Transport
from hpcars.tasks import TaskSource, make_task


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
            session.restarts.after_evaluation(trainer, session.initial_eval.get("score", math.nan), may_restart=False)
        else:
            session.say(f"resumed at iteration {trainer.iteration} (world sizes so far: {session.world_sizes})")

        if session.ended:  # the last checkpoint is the end, but summary.json was not written for it
            session.say(f"nothing left to train ({session.ended}): the summary is written from the last checkpoint")
            last_eval, interrupted = trainer.evaluate(), 0
        elif cfg.schedule == "async":
            from hpcars.run.asynchronous import AsyncLoop

            loop = AsyncLoop(session, stop)
            interrupted = loop.run()
            trainer.guard()  # every rank left the loop at the same update: they must agree
            last_eval = loop.evaluations.final()
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
        if record.eval:  # --restart: a stall starts the search over (not when the run ends here)
            ends = last or bool(stopping) or halt or (newly and cfg.stop_at_target)
            line = session.restarts.after_evaluation(trainer, record.eval.get("score", math.nan), not ends)
            if line:
                session.say(line)
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
