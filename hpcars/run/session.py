"""One process's view of a training run: the trainer, and on rank 0 the files and lines it writes.

``Session`` opens the run (refusing bad input before the run directory is touched),
restores a checkpoint when resuming, records each iteration (metrics row, progress
line, the first time ``--target`` is reached), writes checkpoints and, at the end,
``summary.json``. The loops that drive it live in ``hpcars.train`` (synchronous) and
``hpcars.runtime.asynchronous``.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpcars.algorithm.runningstat import RunningStat
from hpcars.config import TrainConfig, to_dict
from hpcars.population import members as member_table
from hpcars.run import checkpoint
from hpcars.run import history as run_history
from hpcars.run.checkpoint import BestPolicy, Checkpoint
from hpcars.run.console import LOGGER
from hpcars.run.dashboard import Clock, TensorBoardLog, check_available
from hpcars.run.engine import ARSTrainer, IterationRecord
from hpcars.run.initial import InitialWeights
from hpcars.run.output import (
    METRICS_FILE,
    SUMMARY_FILE,
    MetricsLog,
    RunDir,
    metric_columns,
    open_run_dir,
    plan_run_dir,
    write_config,
    write_json_atomic,
)
from hpcars.run.progress import population_line, progress_line
from hpcars.run.provenance import continuation_warning, versions
from hpcars.run.snapshot import restore, snapshot
from hpcars.runtime.agreement import agree, on_rank_0
from hpcars.runtime.comm import Transport
from hpcars.runtime.devices import branch_memory, choose_devices
from hpcars.runtime.update_log import LogEntry, log_arrays, log_entries
from hpcars.tasks import TaskSource, make_task
from hpcars.tasks.base import Task

#: parameters (name -> array) and the V2 statistics an evaluation measured
Evaluated = tuple[dict[str, Any], RunningStat | None]


@dataclass(frozen=True)
class TargetReached:
    """When the evaluation score first reached ``--target`` (the paper's Table 1 measure)."""

    iteration: int
    episodes: int  # training episodes of all members (annealing's judge included) up to here
    samples: int
    wall_s: float
    score: float
    member: int = 0  # the member whose policy the evaluation measured (the best by fitness)


class Session:
    """One process's view of a run: the trainer plus, on rank 0, the files it writes.

    Close it (``close``, or ``with Session(...)``) on every path: the metrics file, the
    TensorBoard writer and the task's environments are released even when a run fails,
    since hpcars also runs inside other programs."""

    def __init__(self, cfg: TrainConfig, transport: Transport, task_source: TaskSource = make_task) -> None:
        self.cfg = cfg
        self.task_source = task_source
        self.transport = transport
        self.lead = transport.rank == 0
        self.task: Task | None = None
        self.metrics: MetricsLog | None = None
        self.tensorboard: TensorBoardLog | None = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        cfg, transport = self.cfg, self.transport
        # Everything that can refuse the input comes before the run directory is touched, and
        # every refusal is agreed on (hpcars.runtime.agreement): no rank waits for one that gave up.
        self.devices, self.task = agree(transport, self._local_parts)
        plan = on_rank_0(transport, lambda: plan_run_dir(cfg))
        if cfg.branch_memory == 0:
            # automatic: a fresh run's figure is decided by rank 0's machine and recorded; a run that
            # continues keeps its recorded figure (0 for runs recorded before the option existed:
            # each rank decides for itself, as those runs never shrank a call)
            if plan.recorded is None:
                budget = on_rank_0(transport, lambda: branch_memory(0.0, self.devices[0]) / 2**30)
            else:  # every rank has the plan, and with it the recorded options
                budget = float(plan.recorded.get("branch_memory", 0.0))
            self.cfg = cfg = dataclasses.replace(cfg, branch_memory=budget)
        self.trainer, saved, initial = agree(transport, lambda: self._build(plan))
        self.init_from = self._init_record(initial)
        run_dir = on_rank_0(transport, lambda: open_run_dir(cfg, plan))
        assert run_dir.path is not None  # open_run_dir names the directory it opens
        self.run_dir: Path = run_dir.path
        self.ended = plan.ended  # the checkpoint has nothing left to train: why
        self.done_summary = plan.summary  # ... and its summary.json, current: printed, nothing touched
        self.world_sizes: list[tuple[int, int]] = []
        self.reached: TargetReached | None = None
        self.elapsed_before = 0.0
        self.async_log: list[LogEntry] = []  # --schedule async: every update sequenced so far
        self.member_rows: list[dict[str, Any]] = []  # population: members rows not yet in history.h5
        self.best: BestPolicy | None = None  # the best evaluation so far and its parameters
        self.initial_eval: dict[str, float] = {}  # the evaluation of θ₀ (kept in every checkpoint)
        previous_metrics = None
        #: rows of each table already in RUN_DIR/history.h5 (a checkpoint appends only the rest)
        self.history_rows = dict.fromkeys(run_history.TABLES, 0)
        if saved is not None:
            self.world_sizes = list(saved.world_sizes)
            self.reached = TargetReached(**saved.reached_target) if saved.reached_target else None
            self.elapsed_before = saved.elapsed_s
            self.init_from = saved.init_from
            self.async_log = log_entries(saved.async_log)
            self.best = saved.best
            self.initial_eval = saved.initial or {}
            previous_metrics = saved.metrics
            if saved.history is not None:
                self.history_rows.update(saved.history)
            self._warn_resume(plan, saved)
        if not self.world_sizes or self.world_sizes[-1][1] != transport.size:
            self.world_sizes.append((self.trainer.iteration, transport.size))
        columns = metric_columns(
            self.task.eval_columns, population=cfg.population > 1, asynchronous=cfg.schedule == "async"
        )
        if self.lead and self.done_summary is None:  # a finished run's files stay byte for byte as they are
            run_history.cut(self.run_dir, self.history_rows)  # rows written after the checkpoint resumed from
            self.metrics = MetricsLog(self.run_dir / METRICS_FILE, columns, previous_metrics)
            write_config(self.run_dir, cfg, self.provenance())
            self.tensorboard = TensorBoardLog(self.run_dir, cfg.log_every) if cfg.log == "tensorboard" else None
        self.clock = Clock(self.trainer.iteration, cfg.iterations, ask_slurm=self.lead)
        self.start = time.perf_counter()
        self.last_checkpoint = self.trainer.iteration if run_dir.resume_from else -1
        self.checkpoint_path = run_dir.resume_from  # the latest checkpoint (rank 0 keeps it current)

    def _local_parts(self) -> tuple[list[torch.device], Task]:
        """What each rank builds on its own (devices depend on the node-local rank; a plug-in
        factory may read node-local files)."""
        devices = choose_devices(self.cfg.device, self.transport.local_rank, self.cfg.devices_per_rank)
        check_available(self.cfg.log)
        self.task = self.task_source(self.cfg)  # kept at once, so that close() releases it if a later step refuses
        LOGGER.debug(
            f"devices {', '.join(map(str, devices))} (node-local rank {self.transport.local_rank}); "
            f"task {getattr(self.task, 'name', self.cfg.task)}"
        )
        return devices, self.task

    def _build(self, plan: RunDir) -> tuple[ARSTrainer, Checkpoint | None, InitialWeights | None]:
        """The trainer, from ``--init-from`` (fresh) or the planned checkpoint (resumed), on every rank."""
        fresh = plan.resume_from is None
        cfg = self.cfg
        initial = InitialWeights.read(cfg.init_from, cfg.init_partial) if cfg.init_from and fresh else None
        assert self.task is not None  # _local_parts has built it
        trainer = ARSTrainer(cfg, self.task, self.transport, self.devices, initial)
        saved = None if plan.resume_from is None else checkpoint.read(plan.resume_from)
        if saved is not None:
            restore(trainer, saved)
        return trainer, saved, initial

    def _warn_resume(self, plan: RunDir, saved: Checkpoint) -> None:
        """Rank 0: one line per checkpoint set aside, and one if the software changed since the run began."""
        for line in plan.unreadable:
            self.warn(f"{line}; resumed from {plan.resume_from} instead (the unreadable file is kept, renamed)")
        warning = continuation_warning(saved.provenance, "resuming")
        if warning:
            self.warn(warning)

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
        close_task = getattr(self.task, "close", None)
        if close_task is not None:
            close_task()
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            trainer.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_record(self, initial: InitialWeights | None) -> dict[str, Any] | None:
        """What --init-from loaded (a fresh start only); V2 statistics carried over from a V2 run."""
        report = self.trainer.init_report
        if initial is None or report is None:
            return None
        if initial.obs_stat is not None and self.trainer.obs_stat is not None:
            self.trainer.set_obs_stat(initial.obs_stat)
        return {
            "path": report.path,
            "file_sha256": report.file_sha256,
            "params_sha256": self.trainer.params_sha256(),
            "loaded": len(report.loaded),
            "kept": report.kept,
            "obs_stat": initial.obs_stat is not None and self.trainer.obs_stat is not None,
        }

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
            initial=self.initial_eval or None,
            provenance=self.provenance(),
        )
        self.checkpoint_path = checkpoint.write(self.run_dir, state, self.cfg.keep_checkpoints)

    def _best_summary(self) -> dict[str, Any] | None:
        if self.best is None:
            return None
        spread = self.best.spread if math.isfinite(self.best.spread) else None  # NaN: a one-unit evaluation
        return {"iteration": self.best.iteration, "score": self.best.score, "spread": spread}

    def episode_count(self) -> dict[str, Any]:
        """How summary.json's episode figures were counted (``episodes`` and ``reached_target``)."""
        cfg, trainer, task = self.cfg, self.trainer, self.task
        assert task is not None and self.metrics is not None  # rank 0 of an open session
        per_member = trainer.iteration * trainer.per_member * task.episodes_per_branch
        judge = trainer.iteration * 2 * trainer.layout.judge_pairs * task.episodes_per_branch
        evaluations = 1 + sum(1 for row in self.metrics.rows if row.get("score", "") != "")
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

    def print_done(self) -> None:
        """Rank 0, a finished run run again: its summary once more; no file is touched."""
        summary = self.done_summary or {}
        lines = [
            f"done already: {self.run_dir} has nothing left to train ({self.ended}); nothing was changed",
            f"  initial: {summary.get('initial')}",
            f"  final:   {summary.get('final')}",
        ]
        if summary.get("target") is not None:
            hit = summary.get("reached_target")
            reached = f"reached at iteration {hit['iteration']}, {hit['episodes']} episodes" if hit else "not reached"
            lines.append(f"  target {summary['target']:g}: {reached}")
        lines += [f"  params_sha256 {summary.get('params_sha256')}", f"  results in {self.run_dir}"]
        self.say("\n".join(lines))

    def finish(self, last_eval: dict, interrupted: int) -> None:
        """Rank 0: close the metrics, write summary.json (unless interrupted), print the result."""
        cfg, trainer = self.cfg, self.trainer
        first_eval = self.initial_eval
        self.close_files()
        sha = trainer.params_sha256()
        latest = self.checkpoint_path
        if interrupted:
            self.say(
                f"stopped by {signal.Signals(interrupted).name} at iteration {trainer.iteration}; checkpoint {latest}\n"
                f"  continue with the same command, or: python -m hpcars.train --resume {self.run_dir}"
            )
            return
        assert self.task is not None  # built when the session opened
        summary = {
            "iterations": trainer.iteration,
            "episodes": trainer.total_episodes,
            "episode_count": self.episode_count(),
            self.task.sample_unit.replace(" ", "_"): trainer.total_samples,
            "wall_s": round(self.elapsed(), 3),
            "world_sizes": self.world_sizes,
            "final": last_eval,
            "initial": first_eval or None,
            "target": cfg.target if math.isfinite(cfg.target) else None,
            "reached_target": dataclasses.asdict(self.reached) if self.reached else None,
            "params_sha256": sha,
            "best": self._best_summary(),
            "init_from": self.init_from,
            "checkpoint": str(latest),
            "provenance": self.provenance(),
        }
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
        lines = [f"done: {trainer.iteration} iterations in {self.elapsed():.1f} s on {self.transport.size} rank(s)"]
        if first_eval:
            lines.append(f"  initial: {first_eval}")
        lines.append(f"  final:   {last_eval}")
        lines.append("  " + trainer.describe().replace("\n", "\n  "))
        if math.isfinite(cfg.target):
            r = self.reached
            reached = f"reached at iteration {r.iteration}, {r.episodes} episodes" if r else "not reached"
            lines.append(f"  target {cfg.target:g}: {reached}")
        if trainer.skipped_steps:
            lines.append(f"  {trainer.skipped_steps} step(s) skipped (non-finite or constant rewards)")
        lines += [f"  params_sha256 {sha}", f"  results in {self.run_dir}"]
        self.say("\n".join(lines))
