"""One process's view of a training run: the trainer, and on rank 0 the files and lines it writes.

``Session`` opens the run (``hpcars.run.opening``: refusing bad input before the run directory
is touched, restoring a checkpoint when resuming) and records it: each iteration (metrics row,
progress line, the first time ``--target`` is reached, the best evaluation), checkpoints, and
at the end ``summary.json`` (``hpcars.run.summary``). The loops that drive it live in
``hpcars.run.loop`` (synchronous) and ``hpcars.run.asynchronous``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

from hpcars.algorithm.runningstat import RunningStat
from hpcars.config import TrainConfig, to_dict
from hpcars.population import members as member_table
from hpcars.run import checkpoint, summary
from hpcars.run import history as run_history
from hpcars.run.checkpoint import BestPolicy
from hpcars.run.console import LOGGER
from hpcars.run.dashboard import Clock, TensorBoardLog
from hpcars.run.engine import IterationRecord
from hpcars.run.opening import OpenRun, TargetReached, open_run
from hpcars.run.output import METRICS_FILE, MetricsLog, metric_columns, write_config
from hpcars.run.progress import population_line, progress_line
from hpcars.run.provenance import versions
from hpcars.run.restarts import Restarts
from hpcars.run.snapshot import snapshot
from hpcars.run.update_log import LogEntry, log_arrays
from hpcars.runtime.comm import Transport
from hpcars.tasks import TaskSource, make_task

#: parameters (name -> array) and the V2 statistics an evaluation measured
Evaluated = tuple[dict[str, Any], RunningStat | None]

__all__ = ["Evaluated", "Session", "TargetReached"]


class Session:
    """One process's view of a run: the trainer plus, on rank 0, the files it writes.

    Close it (``close``, or ``with Session(...)``) on every path: the metrics file, the
    TensorBoard writer and the task's environments are released even when a run fails,
    since hpcars also runs inside other programs."""

    def __init__(self, cfg: TrainConfig, transport: Transport, task_source: TaskSource = make_task) -> None:
        self.transport = transport
        self.lead = transport.rank == 0
        self.metrics: MetricsLog | None = None
        self.tensorboard: TensorBoardLog | None = None
        self._held: list[Any] = []  # the task and the trainer, as soon as each exists
        try:
            self._adopt(open_run(cfg, transport, task_source, self._held))
        except BaseException:
            self.close()
            raise

    def _adopt(self, run: OpenRun) -> None:
        """Take over an opened run; rank 0 opens its files (a finished run's stay byte for byte as they are)."""
        self.cfg, self.devices, self.task, self.trainer = run.cfg, run.devices, run.task, run.trainer
        self.run_dir: Path = run.run_dir
        self.ended = run.plan.ended  # the checkpoint has nothing left to train: why
        self.done_summary = run.plan.summary  # ... and its summary.json, current: printed, nothing touched
        self.init_from, self.world_sizes, self.reached = run.init_from, run.world_sizes, run.reached
        self.elapsed_before, self.best, self.initial_eval = run.elapsed_before, run.best, run.initial_eval
        self.async_log: list[LogEntry] = run.async_log
        self.restarts = Restarts.of(run.cfg)
        self.restarts.load(run.restart, run.trainer.primary)
        self.history_rows = run.history_rows
        self.member_rows: list[dict[str, Any]] = []  # population: members rows not yet in history.h5
        for line in run.warnings:
            self.warn(line)
        cfg = self.cfg
        if self.lead and self.done_summary is None:
            run_history.cut(self.run_dir, self.history_rows)  # rows written after the checkpoint resumed from
            columns = metric_columns(
                self.task.eval_columns, population=cfg.population > 1, asynchronous=cfg.schedule == "async"
            )
            self.metrics = MetricsLog(self.run_dir / METRICS_FILE, columns, run.previous_metrics)
            write_config(self.run_dir, cfg, self.provenance())
            self.tensorboard = TensorBoardLog(self.run_dir, cfg.log_every) if cfg.log == "tensorboard" else None
        self.clock = Clock(self.trainer.iteration, cfg.iterations, ask_slurm=self.lead)
        self.start = time.perf_counter()
        self.last_checkpoint = self.trainer.iteration if run.plan.resume_from else -1
        self.checkpoint_path = run.plan.resume_from  # the latest checkpoint (rank 0 keeps it current)

    def provenance(self) -> dict[str, str | None]:
        """The software and machine (``provenance.versions``), and what the task's results depend on
        besides (a model file's hash)."""
        task_part = getattr(self.task, "provenance", None)
        return {**versions(), **(task_part() if task_part is not None else {})}

    def warn(self, text: str) -> None:
        """Rank 0: a warning line (stderr, under the program's name)."""
        if self.lead:
            LOGGER.warning(text)

    def close_files(self) -> None:
        """Rank 0: close the metrics file and the TensorBoard writer (safe to call twice)."""
        if self.metrics is not None:
            self.metrics.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def close(self) -> None:
        """Release the files and environments this rank holds (safe to call twice, or after a failed start)."""
        self.close_files()
        for part in self._held:
            close = getattr(part, "close", None)
            if close is not None:
                close()
        self._held = []

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def say(self, text: str) -> None:
        """Rank 0: a line for the user (``hpcars.run.console``)."""
        if self.lead:
            LOGGER.info(text)

    def banner(self) -> None:
        """The run's first lines: what is trained, where, on what."""
        cfg, trainer = self.cfg, self.trainer
        self.say(
            f"hpcars: task {cfg.task}  {cfg.variant_name}  N={cfg.directions} b={cfg.top} α={cfg.step_size} "
            f"ν={cfg.noise_std}{population_line(cfg)}  {trainer.spec.size} parameters  {self.transport.size} "
            f"rank(s) on {','.join(map(str, self.devices))}  schedule {cfg.schedule}  run dir {self.run_dir}"
        )
        if trainer.init_report is not None:
            self.say("  " + trainer.init_report.line())
        if trainer.perturbation_check is not None:
            self.say("  check: " + trainer.perturbation_check.describe())
        if trainer.space.kind != "full":
            info = trainer.space.describe()
            self.say(
                f"  search space {info['kind']}: {info['searched']} of {info['parameters']} dimensions searched"
                + "".join(f", {k} {info[k]:.4g}" for k in ("sparsity", "bits") if k in info)
                + f", compressed {info['compressed_bytes']} bytes (full: {4 * info['parameters']})"
            )

    def record(self, record: IterationRecord, print_always: bool = False, evaluated: Evaluated | None = None) -> bool:
        """Rank 0 logs one iteration (metrics row, progress line); every rank learns whether
        the target was first reached here, and keeps the best evaluated parameters.
        ``evaluated``: the parameters an evaluation measured, when they are not the
        trainer's current ones (the asynchronous mode)."""
        score = record.eval.get("score", float("nan"))
        if score > (self.best.score if self.best else -math.inf):
            params, stat = evaluated or (self.trainer.named_params(self.trainer.best), self.trainer.obs_stat)
            spread = record.eval.get("eval_return_std", float("nan"))
            self.best = BestPolicy(record.iteration, score, spread, params, stat)
        newly = self.reached is None and score >= self.cfg.target  # never true for target = nan
        if newly:
            member = self.trainer.best if evaluated is None else 0
            self.reached = TargetReached(
                record.iteration, record.total_episodes, record.total_samples, self.elapsed(), score, member
            )
        if self.lead:
            assert self.metrics is not None and self.task is not None  # rank 0 of an open session
            row = self.metrics.write(record)
            self.member_rows += [record.members] if record.members else []
            if self.tensorboard is not None:
                self.tensorboard.write(record, row)
            first_skip = bool(record.skipped) and self.trainer.skipped_steps == 1  # later ones: in metrics.csv
            if record.iteration % self.cfg.log_every == 0 or print_always or first_skip or newly:
                self.say(progress_line(record, self.task.sample_unit) + self.clock.line(record.iteration))
        if newly:
            r = self.reached
            assert r is not None and self.task is not None  # set just above
            self.say(
                f"reached target {self.cfg.target:g} (score {score:.1f}) at iteration {r.iteration}: "
                f"{r.episodes} episodes, {r.samples} {self.task.sample_unit}, {r.wall_s:.1f} s"
            )
        return newly

    def save(self) -> None:
        """One checkpoint, written by rank 0 (call after ``trainer.guard()``)."""
        self.last_checkpoint = self.trainer.iteration
        if not self.lead:
            return
        start = self.history_rows
        assert self.metrics is not None  # rank 0 keeps the metrics
        new_rows = {
            "metrics": self.metrics.columns_for_checkpoint(start["metrics"]),
            "async_log": log_arrays(self.async_log[start["async_log"] :]),
            member_table.TABLE: member_table.stack(self.member_rows),
        }
        self.history_rows = run_history.append(self.run_dir, new_rows, start)
        self.member_rows = []
        state = dataclasses.replace(
            snapshot(self.trainer),
            config=to_dict(self.cfg),
            elapsed_s=self.elapsed(),
            world_sizes=self.world_sizes,
            reached_target=dataclasses.asdict(self.reached) if self.reached else None,
            history=dict(self.history_rows),
            init_from=self.init_from,
            best=self.best,
            restart=self.restarts.arrays(),
            initial=self.initial_eval or None,
            provenance=self.provenance(),
        )
        self.checkpoint_path = checkpoint.write(self.run_dir, state, self.cfg.keep_checkpoints)

    def print_done(self) -> None:
        """Rank 0, a finished run run again: its summary once more; no file is touched."""
        summary.print_done(self)

    def finish(self, last_eval: dict, interrupted: int) -> None:
        """Rank 0: close the metrics, write summary.json (unless interrupted), print the result."""
        summary.finish(self, last_eval, interrupted)
