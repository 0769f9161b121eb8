"""The run directory: what rank 0 writes, and how a run directory is (re)opened.

Layout of ``RUN_DIR``:

* ``config.json`` — the resolved ``TrainConfig``.
* ``metrics.csv`` — one row per iteration (``METRIC_COLUMNS`` plus the task's
  evaluation columns, empty where not evaluated), flushed as it grows so it can be
  followed live while the job runs.
* ``checkpoints/ckpt-ITERATION.h5`` — the full state (``hpcars.checkpoint``;
  layout in ``docs/checkpoint-format.md``); the latest holds the final parameters.
* ``summary.json`` — written at the end: iterations, episodes, samples or env
  steps, wall clock, initial and final evaluation, when ``--target`` was reached.

A run directory that already holds a checkpoint is resumed (same config) or refused
(different config, unless ``--force-resume``); one that holds files of a run but no
checkpoint is refused. Nothing already saved is overwritten.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from hpcars import checkpoint
from hpcars.config import RESULT_FIELDS, ConfigError, TrainConfig, option_name, to_dict
from hpcars.engine import IterationRecord

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRIC_COLUMNS = (
    "iteration",
    "reward_mean",
    "reward_max",
    "sigma_r",
    "skipped",
    "update_norm",
    "samples",
    "total_samples",
    "total_episodes",
    "elapsed_s",
    "rollout_s",
    "comm_s",
    "update_s",
    "comm_bytes",
)


@dataclass(frozen=True)
class RunDir:
    """Where a run writes, and the checkpoint it continues from (None: a fresh start)."""

    path: Path
    resume_from: Path | None


def config_differences(cfg: TrainConfig, saved: dict[str, Any]) -> list[str]:
    """The result-affecting options in which ``cfg`` differs from a saved config."""
    current = to_dict(cfg)
    return [
        f"{option_name(name)} {saved.get(name)!r} -> {current[name]!r}"
        for name in RESULT_FIELDS
        if saved.get(name) != current[name]
    ]


def resolve_run_dir(cfg: TrainConfig, root: Path = Path("runs")) -> RunDir:
    """Create or reopen the run directory (rank 0 only); ``ConfigError`` if refused."""
    if cfg.resume or cfg.run_dir:
        option = "--resume" if cfg.resume else "--run-dir"
        path = Path(cfg.resume or cfg.run_dir)
        found = checkpoint.latest(path)
        if found is None:
            if cfg.resume:
                raise ConfigError("--resume", f"{path} holds no checkpoint to resume from")
            if (path / METRICS_FILE).exists():
                raise ConfigError(
                    "--run-dir", f"{path} holds files of an earlier run but no checkpoint; choose a new directory"
                )
        else:
            saved = checkpoint.read_config(found)
            differences = config_differences(cfg, saved)
            if differences and not cfg.force_resume:
                raise ConfigError(
                    option,
                    f"{path} holds a run with a different config ({'; '.join(differences)}); "
                    "pass --force-resume to continue it anyway, or choose a new directory",
                )
            return RunDir(path, found)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(option, f"cannot create {path}: {err.strerror}") from None
        return RunDir(path, None)
    root.mkdir(parents=True, exist_ok=True)
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

    def __init__(self, path: Path, eval_columns: list[str], previous: dict[str, np.ndarray] | None = None):
        self.columns = list(METRIC_COLUMNS) + eval_columns
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

    def write(self, record: IterationRecord, elapsed_s: float) -> None:
        row: dict[str, Any] = {c: getattr(record, c) for c in METRIC_COLUMNS if hasattr(record, c)}
        row["elapsed_s"] = round(elapsed_s, 4)
        row.update(record.eval)
        row.update(record.population)
        self.rows.append(row)
        self._csv.writerow(_csv_row(row))
        self._file.flush()

    def columns_for_checkpoint(self) -> dict[str, np.ndarray]:
        table = {}
        for c in self.columns:
            values = [r.get(c, "") for r in self.rows]
            if c == "skipped":
                table[c] = np.array([str(v) for v in values], dtype=object)
            else:
                table[c] = np.array([float("nan") if v == "" else float(v) for v in values])
        return table

    def close(self) -> None:
        self._file.close()


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (int(v) if isinstance(v, float) and v.is_integer() and k in _INTEGER_COLUMNS else v) for k, v in row.items()
    }


_INTEGER_COLUMNS = {
    "iteration",
    "samples",
    "total_samples",
    "total_episodes",
    "comm_bytes",
    "best_member",
    "sa_judged",
    "sa_accepted",
    "clones",
    "repelled",
}


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    write_json_atomic(run_dir / CONFIG_FILE, to_dict(cfg))
