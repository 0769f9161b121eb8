"""Opening a run: fresh or resumed, every refusal of the input before the run directory is touched.

``open_run`` builds what a ``Session`` (``hpcars.run.session``) records from: each rank's
devices and task, the run directory's plan (fresh, or the checkpoint to continue from), the
automatic ``--branch-memory`` decided once, the trainer (from ``--init-from``, or restored
from the checkpoint), and what the checkpoint carries on (world sizes, the target, the best
evaluation, the asynchronous log, the history's row counts). Every step that can refuse runs
under ``agree`` (``hpcars.runtime.agreement``): no rank waits for one that gave up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hpcars.config import TrainConfig
from hpcars.run import checkpoint
from hpcars.run import history as run_history
from hpcars.run.checkpoint import BestPolicy, Checkpoint
from hpcars.run.console import LOGGER
from hpcars.run.dashboard import check_available
from hpcars.run.engine import ARSTrainer
from hpcars.run.initial import InitialWeights
from hpcars.run.output import RunDir, open_run_dir, plan_run_dir
from hpcars.run.provenance import continuation_warning
from hpcars.run.snapshot import restore
from hpcars.run.update_log import LogEntry, log_entries
from hpcars.runtime.agreement import agree, on_rank_0
from hpcars.runtime.comm import Transport
from hpcars.runtime.devices import branch_memory, choose_devices
from hpcars.tasks import TaskSource
from hpcars.tasks.base import Task


@dataclass(frozen=True)
class TargetReached:
    """When the evaluation score first reached ``--target`` (the paper's Table 1 measure)."""

    iteration: int
    episodes: int  # training episodes of all members (annealing's judge included) up to here
    samples: int
    wall_s: float
    score: float
    member: int = 0  # the member whose policy the evaluation measured (the best by fitness)


@dataclass
class OpenRun:
    """An opened run: what every rank built, and what the checkpoint it continues carries on."""

    cfg: TrainConfig  # with the automatic --branch-memory resolved
    devices: list[torch.device]
    task: Task
    trainer: ARSTrainer
    plan: RunDir
    run_dir: Path
    init_from: dict[str, Any] | None = None
    world_sizes: list[tuple[int, int]] = field(default_factory=list)
    reached: TargetReached | None = None
    elapsed_before: float = 0.0
    async_log: list[LogEntry] = field(default_factory=list)  # --schedule async: every update sequenced so far
    restart: dict[str, Any] = field(default_factory=dict)  # --restart: the checkpoint's /restart group
    best: BestPolicy | None = None  # the best evaluation so far and its parameters
    initial_eval: dict[str, float] = field(default_factory=dict)  # the evaluation of θ₀
    previous_metrics: Any = None  # the metrics rows of a checkpoint that holds its own (format 4)
    #: rows of each table already in RUN_DIR/history.h5 (a checkpoint appends only the rest)
    history_rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(run_history.TABLES, 0))
    warnings: list[str] = field(default_factory=list)  # for rank 0 to print: checkpoints set aside, software


def open_run(cfg: TrainConfig, transport: Transport, task_source: TaskSource, keep: list[Any]) -> OpenRun:
    """Open a run on every rank; ``keep`` receives each part that holds resources (the task, the
    trainer) as soon as it exists, so the caller can release them if a later step refuses."""
    devices, task = agree(transport, lambda: _local_parts(cfg, transport, task_source, keep))
    plan = on_rank_0(transport, lambda: plan_run_dir(cfg))
    if cfg.branch_memory == 0:
        # automatic: a fresh run's figure is decided by rank 0's machine and recorded; a run that
        # continues keeps its recorded figure (0 for runs recorded before the option existed:
        # each rank decides for itself, as those runs never shrank a call)
        if plan.recorded is None:
            budget = on_rank_0(transport, lambda: branch_memory(0.0, devices[0]) / 2**30)
        else:  # every rank has the plan, and with it the recorded options
            budget = float(plan.recorded.get("branch_memory", 0.0))
        cfg = dataclasses.replace(cfg, branch_memory=budget)
    trainer, saved, initial = agree(transport, lambda: _build(cfg, task, transport, devices, plan, keep))
    init_from = _init_record(trainer, initial)
    opened = on_rank_0(transport, lambda: open_run_dir(cfg, plan))
    assert opened.path is not None  # open_run_dir names the directory it opens
    run = OpenRun(cfg, devices, task, trainer, plan, opened.path, init_from)
    if saved is not None:
        _carry_on(run, saved)
    if not run.world_sizes or run.world_sizes[-1][1] != transport.size:
        run.world_sizes.append((trainer.iteration, transport.size))
    return run


def _local_parts(
    cfg: TrainConfig, transport: Transport, task_source: TaskSource, keep: list[Any]
) -> tuple[list[torch.device], Task]:
    """What each rank builds on its own (devices depend on the node-local rank; a plug-in
    factory may read node-local files)."""
    devices = choose_devices(cfg.device, transport.local_rank, cfg.devices_per_rank)
    check_available(cfg.log)
    task = task_source(cfg)
    keep.append(task)
    LOGGER.debug(
        f"devices {', '.join(map(str, devices))} (node-local rank {transport.local_rank}); "
        f"task {getattr(task, 'name', cfg.task)}"
    )
    return devices, task


def _build(
    cfg: TrainConfig, task: Task, transport: Transport, devices: list[torch.device], plan: RunDir, keep: list[Any]
) -> tuple[ARSTrainer, Checkpoint | None, InitialWeights | None]:
    """The trainer, from ``--init-from`` (fresh) or the planned checkpoint (resumed), on every rank."""
    fresh = plan.resume_from is None
    initial = InitialWeights.read(cfg.init_from, cfg.init_partial) if cfg.init_from and fresh else None
    trainer = ARSTrainer(cfg, task, transport, devices, initial)
    keep.append(trainer)
    saved = None if plan.resume_from is None else checkpoint.read(plan.resume_from)
    if saved is not None:
        restore(trainer, saved)
    return trainer, saved, initial


def _init_record(trainer: ARSTrainer, initial: InitialWeights | None) -> dict[str, Any] | None:
    """What --init-from loaded (a fresh start only); V2 statistics carried over from a V2 run."""
    report = trainer.init_report
    if initial is None or report is None:
        return None
    if initial.obs_stat is not None and trainer.obs_stat is not None:
        trainer.set_obs_stat(initial.obs_stat)
    return {
        "path": report.path,
        "file_sha256": report.file_sha256,
        "params_sha256": trainer.params_sha256(),
        "loaded": len(report.loaded),
        "kept": report.kept,
        "obs_stat": initial.obs_stat is not None and trainer.obs_stat is not None,
    }


def _carry_on(run: OpenRun, saved: Checkpoint) -> None:
    """What a resumed run keeps from its checkpoint, and the lines to warn with."""
    run.world_sizes = list(saved.world_sizes)
    run.reached = TargetReached(**saved.reached_target) if saved.reached_target else None
    run.elapsed_before = saved.elapsed_s
    run.init_from = saved.init_from
    run.async_log = log_entries(saved.async_log)
    run.restart = saved.restart
    run.best = saved.best
    run.initial_eval = saved.initial or {}
    run.previous_metrics = saved.metrics
    if saved.history is not None:
        run.history_rows.update(saved.history)
    for line in run.plan.unreadable:
        run.warnings.append(
            f"{line}; resumed from {run.plan.resume_from} instead (the unreadable file is kept, renamed)"
        )
    warning = continuation_warning(saved.provenance, "resuming")
    if warning:
        run.warnings.append(warning)
