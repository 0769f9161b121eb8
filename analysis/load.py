"""Read the runs of a sweep (or any folder of run directories) into tidy tables.

Works offline with plain h5py on the HDF5 checkpoints (``docs/checkpoint-format.md``)
— also while the sweep is still running: each run's latest complete checkpoint is
read (writes are atomic), and a file that cannot be read is skipped with a warning.

``load_sweep(path)`` returns one row per (run, iteration) with the run's
identifying columns (``run``, ``task``, ``variant`` — the paper's name —, ``seed``,
``target``, ``setting`` and one column per option that differs between runs) and the metrics
columns (``iteration``, ``total_episodes``, ``total_samples``, ``score``, ...).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from hpcars.config import fields_with_role

CHECKPOINT = re.compile(r"ckpt-(\d+)\.h5$")
#: options that never define a setting (they name where, how or how long a run ran)
NOT_SETTINGS = {"seed", *fields_with_role("run")}
#: options that act only when another is on (truthy): not a setting among runs where it is off
#: (e.g. runs of one sweep made before and after a default changed)
ACTIVE_WITH = {
    "repulsion_radius": "repulsion",
    "anneal_pairs": "anneal_t0",
    "anneal_cooling": "anneal_t0",
    "kill_fraction": "generation_every",
    "clone_from": "generation_every",
    "pbt_perturb": "generation_every",
    "swarm_inertia": "swarm",
    "swarm_cognitive": "swarm",
    "swarm_social": "swarm",
}


def _effective(config: dict[str, Any], key: str) -> Any:
    """The value of option ``key`` as far as the result goes (None when it cannot act)."""
    parent = ACTIVE_WITH.get(key)
    return config.get(key) if parent is None or config.get(parent) else None


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under ``root`` (a folder with a ``checkpoints`` subfolder)."""
    return sorted(p.parent for p in Path(root).rglob("checkpoints") if p.is_dir())


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").iterdir() if (m := CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, dict | None] | None:
    """(config, metrics table, reached_target) of a run's latest checkpoint; None if unusable."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "hpcars-checkpoint":
                raise ValueError("not an hpcars checkpoint")
            config = json.loads(f.attrs["config"])
            reached = json.loads(f.attrs["reached_target"])
            rows = json.loads(f.attrs.get("history", "null"))  # format 5: the table is in RUN_DIR/history.h5
            if rows is None:
                columns = _table(f["metrics"], None)
        if rows is not None:
            with h5py.File(run_dir / "history.h5", "r", locking=False) as f:  # never block the run's writer
                columns = _table(f["metrics"], rows["metrics"]) if rows["metrics"] else {}
    except (OSError, KeyError, ValueError) as err:
        warnings.warn(f"skipping {path}: {err}", stacklevel=2)
        return None
    return config, pd.DataFrame(columns), reached


def _table(group: h5py.Group, rows: int | None) -> dict[str, np.ndarray]:
    """The columns of a metrics group, the first ``rows`` rows (None: all)."""
    columns = {}
    for name, dataset in group.items():
        values = dataset.asstr()[:rows] if h5py.check_string_dtype(dataset.dtype) else dataset[:rows]
        columns[name] = np.asarray(values)
    return columns


def variant_name(config: dict[str, Any]) -> str:
    top = config.get("top_directions") or config["directions"]
    return config["variant"].upper() + ("-t" if top < config["directions"] else "")


def load_sweep(root: Path) -> pd.DataFrame:
    """All iterations of all readable runs under ``root``, one row each."""
    frames, configs = [], {}
    for run_dir in run_dirs(root):
        loaded = read_run(run_dir)
        if loaded is None:
            continue
        config, metrics, _ = loaded
        name = str(run_dir.relative_to(root)) if run_dir != Path(root) else run_dir.name
        configs[name] = config
        frames.append(metrics.assign(run=name))
    if not frames:
        return pd.DataFrame()
    varying = sorted(
        key
        for key in set().union(*configs.values())
        if key not in NOT_SETTINGS and len({json.dumps(_effective(c, key)) for c in configs.values()}) > 1
    )
    table = pd.concat(frames, ignore_index=True)
    for key in ["task", "seed", "target", *varying]:
        table[key] = table["run"].map(lambda run, key=key: configs[run].get(key))
    table["variant"] = table["run"].map(lambda run: variant_name(configs[run]))
    table["setting"] = table["run"].map(lambda run: ",".join(f"{k}={configs[run].get(k)}" for k in varying) or "all")
    table.attrs["swept"] = varying
    return table


def evaluations(table: pd.DataFrame) -> pd.DataFrame:
    """Only the rows where the policy was evaluated (score present)."""
    return table[table["score"].notna()] if "score" in table else table.iloc[0:0]
