"""The end of a run: ``summary.json`` and the lines rank 0 prints (``hpcars.run.session``).

``summary.json`` holds the counters, the initial and final evaluations, when the target was
reached, ``params_sha256``, the best evaluation, where θ₀ came from, the last checkpoint and
the provenance; ``episode_count`` says how its episode figures were counted. A run stopped by
a signal writes none (its checkpoint is where it continues); a finished run run again prints
its summary once more and touches nothing.
"""

from __future__ import annotations

import dataclasses
import math
import signal
from pathlib import Path
from typing import Any, Protocol

from hpcars.config import TrainConfig
from hpcars.run.checkpoint import BestPolicy
from hpcars.run.engine import ARSTrainer
from hpcars.run.opening import TargetReached
from hpcars.run.output import SUMMARY_FILE, MetricsLog, write_json_atomic
from hpcars.run.restarts import Restarts
from hpcars.runtime.comm import Transport
from hpcars.tasks.base import Task


class Session(Protocol):
    """What these functions read of a ``hpcars.run.session.Session``."""

    cfg: TrainConfig
    trainer: ARSTrainer
    task: Task
    transport: Transport
    metrics: MetricsLog | None
    run_dir: Path
    best: BestPolicy | None
    reached: TargetReached | None
    init_from: dict[str, Any] | None
    initial_eval: dict[str, float]
    world_sizes: list[tuple[int, int]]
    checkpoint_path: Path | None
    restarts: Restarts
    done_summary: dict[str, Any] | None
    ended: str

    def say(self, text: str) -> None: ...

    def elapsed(self) -> float: ...

    def close_files(self) -> None: ...

    def provenance(self) -> dict[str, str | None]: ...


def best_summary(session: Session) -> dict[str, Any] | None:
    best = session.best
    if best is None:
        return None
    spread = best.spread if math.isfinite(best.spread) else None  # NaN: a one-unit evaluation
    return {"iteration": best.iteration, "score": best.score, "spread": spread}


def episode_count(session: Session) -> dict[str, Any]:
    """How summary.json's episode figures were counted (``episodes`` and ``reached_target``)."""
    cfg, trainer, task = session.cfg, session.trainer, session.task
    assert session.metrics is not None  # rank 0 of an open session
    per_member = trainer.iteration * trainer.per_member * task.episodes_per_branch
    judge = trainer.iteration * 2 * trainer.layout.judge_pairs * task.episodes_per_branch
    evaluations = 1 + sum(1 for row in session.metrics.rows if row.get("score", "") != "")
    return {
        "rule": "training episodes of all members, annealing's judge episodes included, up to the first "
        "evaluation (of the best member by fitness) whose score reached the target; evaluation episodes "
        "are not training episodes and are counted apart",
        "members": cfg.population,
        "episodes_by_member": [per_member] * cfg.population,
        "judge_episodes": judge * cfg.population,
        "evaluated_member": trainer.best,
        "evaluations": evaluations,
        "evaluation_episodes": evaluations * task.eval_units if task.episodes_per_branch else 0,
    }


def print_done(session: Session) -> None:
    """Rank 0, a finished run run again: its summary once more; no file is touched."""
    summary = session.done_summary or {}
    lines = [
        f"done already: {session.run_dir} has nothing left to train ({session.ended}); nothing was changed",
        f"  initial: {summary.get('initial')}",
        f"  final:   {summary.get('final')}",
    ]
    if summary.get("target") is not None:
        hit = summary.get("reached_target")
        reached = f"reached at iteration {hit['iteration']}, {hit['episodes']} episodes" if hit else "not reached"
        lines.append(f"  target {summary['target']:g}: {reached}")
    lines += [f"  params_sha256 {summary.get('params_sha256')}", f"  results in {session.run_dir}"]
    session.say("\n".join(lines))


def finish(session: Session, last_eval: dict, interrupted: int) -> None:
    """Rank 0: close the metrics, write summary.json (unless interrupted), print the result."""
    cfg, trainer = session.cfg, session.trainer
    first_eval = session.initial_eval
    session.close_files()
    sha = trainer.params_sha256()
    latest = session.checkpoint_path
    if interrupted:
        session.say(
            f"stopped by {signal.Signals(interrupted).name} at iteration {trainer.iteration}; checkpoint {latest}\n"
            f"  continue with the same command, or: python -m hpcars.train --resume {session.run_dir}"
        )
        return
    summary = {
        "iterations": trainer.iteration,
        "episodes": trainer.total_episodes,
        "episode_count": episode_count(session),
        session.task.sample_unit.replace(" ", "_"): trainer.total_samples,
        "wall_s": round(session.elapsed(), 3),
        "world_sizes": session.world_sizes,
        "final": last_eval,
        "initial": first_eval or None,
        "target": cfg.target if math.isfinite(cfg.target) else None,
        "reached_target": dataclasses.asdict(session.reached) if session.reached else None,
        "params_sha256": sha,
        "best": best_summary(session),
        "restarts": session.restarts.summary() if cfg.restart != "none" else None,
        "init_from": session.init_from,
        "checkpoint": str(latest),
        "provenance": session.provenance(),
    }
    write_json_atomic(session.run_dir / SUMMARY_FILE, summary)
    session.say("\n".join(_result_lines(session, first_eval, last_eval, sha)))


def _result_lines(session: Session, first_eval: dict, last_eval: dict, sha: str) -> list[str]:
    cfg, trainer = session.cfg, session.trainer
    lines = [f"done: {trainer.iteration} iterations in {session.elapsed():.1f} s on {session.transport.size} rank(s)"]
    if first_eval:
        lines.append(f"  initial: {first_eval}")
    lines.append(f"  final:   {last_eval}")
    lines.append("  " + trainer.describe().replace("\n", "\n  "))
    if math.isfinite(cfg.target):
        r = session.reached
        reached = f"reached at iteration {r.iteration}, {r.episodes} episodes" if r else "not reached"
        lines.append(f"  target {cfg.target:g}: {reached}")
    if session.restarts.iterations:
        lines.append(f"  restarted at iteration(s) {', '.join(map(str, session.restarts.iterations))}")
    if trainer.skipped_steps:
        lines.append(f"  {trainer.skipped_steps} step(s) skipped (non-finite or constant rewards)")
    lines += [f"  params_sha256 {sha}", f"  results in {session.run_dir}"]
    return lines
