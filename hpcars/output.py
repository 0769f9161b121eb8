"""The run directory: what rank 0 writes and what ``hpcars.inspect`` reads back.

Layout of ``RUN_DIR``:

* ``config.json`` — the resolved ``TrainConfig``.
* ``summary.json`` — written at the end: iterations, episodes, samples or env
  steps, wall clock, initial and final evaluation, when ``--target`` was reached.
* ``metrics.csv`` — one row per iteration (``METRIC_COLUMNS`` plus the task's
  evaluation columns, empty where not evaluated), flushed as it grows so it can be
  followed live.
* ``params.h5`` — the parameters, written atomically (temp file, fsync, rename):
  root attributes ``format = "hpcars-params"``, ``format_version``, ``iteration``,
  ``world_size``, ``params_sha256``, ``param_names`` (JSON list: the flattening
  order), ``config`` (JSON); one float32 dataset per parameter under ``/params``;
  for V2 the input statistics under ``/obs_stat`` (``count``, ``mean``, ``m2``).
  Plain h5py or h5dump reads it without hpcars.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from hpcars.config import ConfigError, TrainConfig, to_dict
from hpcars.engine import IterationRecord
from hpcars.runningstat import RunningStat

FORMAT = "hpcars-params"
FORMAT_VERSION = 1
PARAMS_FILE = "params.h5"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
METRIC_COLUMNS = (
    "iteration", "reward_mean", "reward_max", "sigma_r", "skipped", "update_norm", "samples",
    "total_samples", "total_episodes", "elapsed_s", "rollout_s", "comm_s", "update_s", "comm_bytes",
)  # fmt: skip


def resolve_run_dir(cfg: TrainConfig, root: Path = Path("runs")) -> Path:
    """Create and return the run directory (rank 0 only).

    An explicit ``--run-dir`` that already holds a run is refused, so nothing saved
    is overwritten; the default picks the next free ``runs/TASK-seedSEED-NNN``.
    """
    if cfg.run_dir:
        path = Path(cfg.run_dir)
        if any((path / f).exists() for f in (PARAMS_FILE, METRICS_FILE)):
            raise ConfigError("--run-dir", f"{path} already holds a run; choose a new directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError("--run-dir", f"cannot create {path}: {err.strerror}")
        return path
    root.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"{re.escape(cfg.task)}-seed{cfg.seed}-(\d+)$")
    taken = [int(m.group(1)) for p in root.iterdir() if (m := pattern.match(p.name))]
    number = max(taken, default=0) + 1
    while True:
        path = root / f"{cfg.task}-seed{cfg.seed}-{number:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            number += 1


class MetricsWriter:
    """Appends one CSV row per iteration and flushes it."""

    def __init__(self, path: Path, eval_columns: list[str]) -> None:
        self.columns = list(METRIC_COLUMNS) + eval_columns
        self._file: IO[str] = open(path, "w", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns)
        self._csv.writeheader()

    def write(self, record: IterationRecord, elapsed_s: float) -> None:
        row: dict[str, Any] = {c: getattr(record, c) for c in METRIC_COLUMNS if hasattr(record, c)}
        row["elapsed_s"] = round(elapsed_s, 4)
        row.update(record.eval)
        self._csv.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    write_json_atomic(run_dir / CONFIG_FILE, to_dict(cfg))


def save_params(
    run_dir: Path,
    named: dict[str, np.ndarray],
    *,
    cfg: TrainConfig,
    iteration: int,
    world_size: int,
    sha256: str,
    obs_stat: RunningStat | None,
) -> Path:
    """Write ``params.h5`` atomically: a reader sees the old file or the new one."""
    final = run_dir / PARAMS_FILE
    tmp = run_dir / f".{PARAMS_FILE}.tmp-{os.getpid()}"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["iteration"] = iteration
        f.attrs["world_size"] = world_size
        f.attrs["params_sha256"] = sha256
        f.attrs["param_names"] = json.dumps(list(named))
        f.attrs["config"] = json.dumps(to_dict(cfg))
        group = f.create_group("params")
        for name, value in named.items():
            group.create_dataset(name, data=np.asarray(value, dtype="<f4"))
        if obs_stat is not None:
            stats = f.create_group("obs_stat")
            stats.create_dataset("count", data=obs_stat.count)
            stats.create_dataset("mean", data=obs_stat.mean)
            stats.create_dataset("m2", data=obs_stat.m2)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final
