"""The run directory: what rank 0 writes, and how a run directory is (re)opened.

Layout of ``RUN_DIR``:

* ``config.json`` — the resolved ``TrainConfig``, and a ``provenance`` block: the
  software the run is made with (``hpcars.run.provenance.versions()``: hpcars' version
  and git commit, Python, torch, NumPy, mpi4py and the MPI library, Gymnasium,
  MuJoCo, EnvPool, h5py). Checkpoints carry the same as an attribute.
* ``metrics.csv`` — one row per iteration (``METRIC_COLUMNS`` plus the task's
  evaluation columns, empty where not evaluated), flushed as it grows so it can be
  followed live while the job runs.
* ``checkpoints/ckpt-ITERATION.h5`` — the full state (``hpcars.run.checkpoint``;
  layout in ``docs/checkpoint-format.md``); the latest holds the final parameters.
* ``summary.json`` — written at the end: iterations, episodes, samples or env
  steps, wall clock, initial and final evaluation, when ``--target`` was reached,
  and the ``provenance`` block of the software that finished it.

A run directory that already holds a checkpoint is resumed (same config) or refused
(different config, unless ``--force-resume``); one that holds files of a run but no
checkpoint is refused. Nothing already saved is overwritten.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from hpcars.config import RESULT_FIELDS, TrainConfig, option_name, to_dict
from hpcars.errors import CheckpointError, ConfigError, PathProblem
from hpcars.population.layer import COLUMNS as POPULATION_COLUMNS
from hpcars.population.layer import PopulationRecord
from hpcars.run import checkpoint
from hpcars.run.engine import IterationRecord
from hpcars.run.paths import writable_directory
from hpcars.run.provenance import versions
from hpcars.run.update_log import ASYNC_COLUMNS, AsyncRecord

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"


def _scalar_fields(record_type: type) -> dict[str, type]:
    """Field name -> type of a record dataclass's int, float and str fields, in order."""
    hints = typing.get_type_hints(record_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(record_type) if hints[f.name] in (int, float, str)}


_RECORD_FIELDS = _scalar_fields(IterationRecord)
_POPULATION_FIELDS = _scalar_fields(PopulationRecord)
_ASYNC_FIELDS = _scalar_fields(AsyncRecord)
#: The columns every run has, in order: the scalar fields of ``IterationRecord``.
METRIC_COLUMNS = tuple(_RECORD_FIELDS)
#: Columns written as integers, and as text; every other column is a float.
INTEGER_COLUMNS = frozenset(
    n for f in (_RECORD_FIELDS, _POPULATION_FIELDS, _ASYNC_FIELDS) for n, t in f.items() if t is int
)
TEXT_COLUMNS = frozenset(n for n, t in _RECORD_FIELDS.items() if t is str)


def metric_columns(eval_columns: Sequence[str], population: bool, asynchronous: bool = False) -> list[str]:
    """All columns of a run's table: the record's, the task's evaluation, the population's and
    the asynchronous mode's."""
    return [
        *METRIC_COLUMNS,
        *eval_columns,
        *(POPULATION_COLUMNS if population else ()),
        *(ASYNC_COLUMNS if asynchronous else ()),
    ]


@dataclass(frozen=True)
class RunDir:
    """Where a run writes, and the checkpoint it continues from (None: a fresh start)."""

    path: Path | None  # None only in a plan: a fresh run under runs/, named when it is created
    resume_from: Path | None
    #: newer checkpoints that could not be read, one line each: set aside (never deleted) when the run opens
    unreadable: tuple[str, ...] = ()
    #: why the checkpoint has nothing left to train ("": it trains on)
    ended: str = ""
    #: a finished run's ``summary.json`` when it describes that checkpoint: printed again, nothing touched
    summary: dict[str, Any] | None = None
    #: the options recorded in the checkpoint continued from (None: a fresh start)
    recorded: dict[str, Any] | None = None


def config_differences(cfg: TrainConfig, saved: dict[str, Any]) -> list[str]:
    """The result-affecting options in which ``cfg`` differs from a saved config. An option the
    saved config lacks (added after it was written) counts as its default: a new option's
    default is what hpcars did before it existed."""
    current, defaults = to_dict(cfg), to_dict(TrainConfig())
    automatic = {"branch_memory"} if cfg.branch_memory == 0 else set()  # 0 takes the figure the run recorded
    return [
        f"{option_name(name)} {saved.get(name, defaults[name])!r} -> {current[name]!r}"
        for name in RESULT_FIELDS
        if saved.get(name, defaults[name]) != current[name] and name not in automatic
    ]


def ended(cfg: TrainConfig, saved: checkpoint.Checkpoint) -> str:
    """Why a run at checkpoint ``saved`` would train no further under ``cfg`` ("": it would)."""
    if saved.iteration >= cfg.iterations:
        return f"it has run {saved.iteration} of --iterations {cfg.iterations}"
    if cfg.stop_at_target and saved.reached_target:
        return f"it reached --target {cfg.target:g} and --stop-at-target is on"
    per_iteration = saved.total_episodes // saved.iteration if saved.iteration else 0
    if cfg.max_episodes and per_iteration and saved.total_episodes + per_iteration > cfg.max_episodes:
        return f"another iteration would pass --max-episodes {cfg.max_episodes}"
    return ""


def newest_readable(run_dir: Path) -> tuple[Path | None, checkpoint.Checkpoint | None, list[str]]:
    """The newest checkpoint that reads, read, and one line for each newer one that does not.
    ``CheckpointError`` when none reads; (None, None, []) when there is none."""
    files = checkpoint.listing(run_dir)
    skipped: list[str] = []
    first_error: CheckpointError | None = None
    for candidate in reversed(files):
        try:
            return candidate, checkpoint.read(candidate), skipped
        except checkpoint.HistoryUnavailable:  # every checkpoint of the run would meet it: not theirs to blame
            raise
        except CheckpointError as err:
            first_error = first_error or err
            skipped.append(str(err))
    if first_error is not None:
        raise first_error
    return None, None, []


def _current_summary(run_dir: Path, saved: checkpoint.Checkpoint) -> dict[str, Any] | None:
    """The run's summary.json if it was written for exactly this checkpoint."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    same = summary.get("params_sha256") == saved.params_sha256 and summary.get("iterations") == saved.iteration
    return summary if isinstance(summary, dict) and same else None


def plan_run_dir(cfg: TrainConfig) -> RunDir:
    """Decide (rank 0): resume which checkpoint, or start fresh where; ``ConfigError`` if
    refused. Nothing is created: ``path`` is None for a fresh run under ``runs/``.

    The newest checkpoint that reads is resumed: a newer unreadable one (a file cut short
    by a crashed file system, say) is reported and set aside, never deleted. A run with
    nothing left to train is not trained again: its summary is printed once more."""
    option = "--resume" if cfg.resume else "--run-dir"
    if not (cfg.resume or cfg.run_dir):
        return RunDir(None, None)
    path = Path(cfg.resume or cfg.run_dir)
    try:
        found, saved, unreadable = newest_readable(path)
    except OSError as err:
        raise ConfigError(option, f"cannot read {path}: {err.strerror}") from None
    if found is None or saved is None:
        if cfg.resume:
            raise ConfigError("--resume", f"{path} holds no checkpoint to resume from")
        if (path / METRICS_FILE).exists():
            raise ConfigError(
                "--run-dir", f"{path} holds files of an earlier run but no checkpoint; choose a new directory"
            )
        return RunDir(path, None)
    differences = config_differences(cfg, saved.config)
    if differences and not cfg.force_resume:
        raise ConfigError(
            option,
            f"{path} holds a run with a different config ({'; '.join(differences)}); "
            "pass --force-resume to continue it anyway, or choose a new directory",
        )
    why = ended(cfg, saved)
    summary = _current_summary(path, saved) if why and not unreadable else None
    return RunDir(path, found, tuple(unreadable), why, summary, saved.config)


def set_aside(run_dir: Path, resume_from: Path) -> list[Path]:
    """Rename the checkpoints newer than ``resume_from`` out of the listing (``….h5.unreadable``),
    so the resumed run neither overwrites nor prunes them; returns the new names."""
    moved = []
    for path in checkpoint.listing(run_dir):
        if checkpoint.iteration_of(path) > checkpoint.iteration_of(resume_from):
            target = path.with_name(path.name + ".unreadable")
            os.replace(path, target)
            moved.append(target)
    return moved


def open_run_dir(cfg: TrainConfig, plan: RunDir, root: Path = Path("runs")) -> RunDir:
    """Create the planned directory (rank 0), checked to be writable; ``ConfigError`` if not.
    A fresh run without ``--run-dir`` gets ``runs/TASK-seedSEED-NNN``, the next free NNN."""
    option = "--resume" if cfg.resume else "--run-dir"
    try:
        if plan.path is not None:
            path = writable_directory(plan.path)
            if plan.unreadable and plan.resume_from is not None:
                set_aside(path, plan.resume_from)
            return dataclasses.replace(plan, path=path)
        try:
            writable_directory(root)
        except PathProblem as err:
            raise PathProblem(f"{err} (the default place for run directories; pass --run-dir)") from None
    except PathProblem as err:
        raise ConfigError(option, str(err)) from None
    task = cfg.task.rpartition(":")[2]  # "package.module:Env-v0" -> "Env-v0"
    pattern = re.compile(rf"{re.escape(task)}-seed{cfg.seed}-(\d+)$")
    taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = root / f"{task}-seed{cfg.seed}-{number:03d}"
        try:
            path.mkdir()
            return RunDir(path, None)
        except FileExistsError:
            number += 1


class MetricsLog:
    """The per-iteration table: appended to ``metrics.csv`` live, kept for checkpoints."""

    def __init__(self, path: Path, columns: list[str], previous: dict[str, np.ndarray] | None = None):
        self.columns = columns
        self.rows: list[dict[str, Any]] = []
        if previous:  # resuming: the checkpoint's table replaces whatever the CSV had past it
            count = len(next(iter(previous.values())))
            for i in range(count):
                row = {c: previous[c][i] for c in self.columns if c in previous}
                self.rows.append({c: ("" if isinstance(v, float) and np.isnan(v) else v) for c, v in row.items()})
        self._file: IO[str] = open(path, "w", newline="")  # noqa: SIM115 - open for the whole run
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
        self._csv.writeheader()
        for row in self.rows:
            self._csv.writerow(_csv_row(row))
        self._file.flush()

    def write(self, record: IterationRecord) -> dict[str, Any]:
        row: dict[str, Any] = {c: getattr(record, c) for c in METRIC_COLUMNS}
        row["elapsed_s"] = round(record.elapsed_s, 4)
        row.update(record.eval)
        if record.population is not None:
            row.update(record.population.columns())
        if record.asynchronous is not None:
            row.update(record.asynchronous.columns())
        self.rows.append(row)
        self._csv.writerow(_csv_row(row))
        self._file.flush()
        return row

    def columns_for_checkpoint(self, start: int = 0) -> dict[str, np.ndarray]:
        """The table's rows from ``start`` on, column -> values (NaN / "" where not measured)."""
        table = {}
        for c in self.columns:
            values = [r.get(c, "") for r in self.rows[start:]]
            if c in TEXT_COLUMNS:
                table[c] = np.array([str(v) for v in values], dtype=object)
            else:
                table[c] = np.array([float("nan") if v == "" else float(v) for v in values])
        return table

    def close(self) -> None:
        self._file.close()


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (int(v) if isinstance(v, float) and v.is_integer() and k in INTEGER_COLUMNS else v) for k, v in row.items()
    }


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: TrainConfig, provenance: dict[str, str | None] | None = None) -> None:
    """``config.json``: every option's value, and the software it runs with (``provenance``)."""
    write_json_atomic(run_dir / CONFIG_FILE, {**to_dict(cfg), "provenance": provenance or versions()})
