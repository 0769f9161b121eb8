"""The run's growing tables — the metrics and the asynchronous update log — in one
append-only HDF5 file, ``RUN_DIR/history.h5``, so that a checkpoint writes only the rows
that are new since the last one.

Layout: one group per table (``/metrics``, ``/async_log``, and a population's per-member
``/members``, ``hpcars.population.members``), one dataset per column,
each resizable along its first axis (rows) and chunked, so appending k rows costs
O(k) whatever the run's length. A checkpoint records how many rows of each table
belong to it (its ``history`` attribute); rows past that count — written just before a
crash that left no checkpoint for them — are cut off when the run resumes, so the file
and the checkpoint it is resumed from always agree. Older checkpoints of the same run
stay valid: they name a prefix of the same rows.

Writes go in place (an HDF5 file is not renamed on every checkpoint — that is the point),
flushed and fsynced before the checkpoint that names them is written. The file is opened
without HDF5's file locks, by the run and by readers alike: a reader (``hpcars-inspect``,
``analysis``) must never make the run's next checkpoint fail, and a read that meets an
append half done fails with an error the reader reports, while the rows a checkpoint
names are never rewritten. Plain h5py reads it without hpcars.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from hpcars.errors import HistoryError

FILE = "history.h5"
TABLES = ("metrics", "async_log", "members")
_CHUNK_BYTES = 1 << 16  # at most 64 KiB and 1,024 rows per chunk: a short run's file stays small
_CHUNK_ROWS = 1024


def path_in(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


def _rows_of(group: h5py.Group) -> int:
    return min((d.shape[0] for d in group.values()), default=0)


def rows(run_dir: Path) -> dict[str, int]:
    """How many rows each table holds now (0 for a table, or a file, not there yet)."""
    path = path_in(run_dir)
    if not path.exists():
        return dict.fromkeys(TABLES, 0)
    with h5py.File(path, "r", locking=False) as f:
        return {t: _rows_of(f[t]) if t in f else 0 for t in TABLES}


def _sync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def cut(run_dir: Path, keep: dict[str, int]) -> None:
    """Keep the first ``keep[table]`` rows of every table (what the resumed checkpoint names)."""
    path = path_in(run_dir)
    if not path.exists():
        return
    with h5py.File(path, "a", locking=False) as f:
        for table in TABLES:
            if table not in f:
                continue
            for dataset in f[table].values():
                if dataset.shape[0] > keep.get(table, 0):
                    dataset.resize(keep.get(table, 0), axis=0)
    _sync(path)


def _column(group: h5py.Group, name: str, value: np.ndarray, rows: int) -> h5py.Dataset:
    """The column's dataset, created with ``rows`` rows of its fill value (NaN, "") if new."""
    if name in group:
        return group[name]
    if value.dtype.kind in "OUS":
        return group.create_dataset(name, shape=(rows,), maxshape=(None,), chunks=(1024,), dtype=h5py.string_dtype())
    row_bytes = max(1, int(np.prod(value.shape[1:], dtype=np.int64)) * value.dtype.itemsize)
    fill = np.nan if value.dtype.kind == "f" else 0
    return group.create_dataset(
        name,
        shape=(rows, *value.shape[1:]),
        maxshape=(None, *value.shape[1:]),
        # a zero-width column (the log's moments without V2) cannot be chunked by hand
        chunks=(min(_CHUNK_ROWS, max(1, _CHUNK_BYTES // row_bytes)), *value.shape[1:])
        if all(value.shape[1:])
        else True,
        dtype=value.dtype,
        fillvalue=fill,
    )


def _fill(dataset: h5py.Dataset, count: int) -> np.ndarray:
    """``count`` rows of the column's fill value ("" for text)."""
    if h5py.check_string_dtype(dataset.dtype):
        return np.full(count, "", dtype=object)
    return np.full((count, *dataset.shape[1:]), dataset.fillvalue, dtype=dataset.dtype)


def append(run_dir: Path, new_rows: dict[str, dict[str, np.ndarray]], start: dict[str, int]) -> dict[str, int]:
    """Write ``new_rows[table]`` (column -> [k, ...]) as rows ``start[table]`` onwards and return
    each table's row count after. Rows at or past ``start`` left by an earlier attempt are
    replaced; a column not given gets its fill value. Flushed and fsynced before it returns."""
    path = path_in(run_dir)
    counts = dict(start)
    with h5py.File(path, "a", locking=False) as f:
        for table, columns in new_rows.items():
            if not columns:
                continue
            group = f.require_group(table)
            begin = start.get(table, 0)
            if _rows_of(group) < begin:
                raise HistoryError(f"{path}: /{table} has {_rows_of(group)} rows, expected at least {begin}")
            count = len(next(iter(columns.values())))
            for name, value in columns.items():
                value = np.asarray(value)
                if value.dtype.kind in "OUS":
                    value = value.astype(object)
                _column(group, name, value, begin)
            for name, dataset in group.items():
                dataset.resize(begin + count, axis=0)
                if count:  # every column's new rows are written: a stale row never survives under them
                    dataset[begin:] = np.asarray(columns[name]) if name in columns else _fill(dataset, count)
            counts[table] = begin + count
    _sync(path)
    return counts


def read(run_dir: Path, wanted: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """The first ``wanted[table]`` rows of each table; ``HistoryError`` if the file lacks them."""
    path = path_in(run_dir)
    if not any(wanted.values()):
        return {t: {} for t in TABLES}
    try:
        with h5py.File(path, "r", locking=False) as f:
            out: dict[str, dict[str, np.ndarray]] = {}
            for table in TABLES:
                n = wanted.get(table, 0)
                if n == 0:
                    out[table] = {}
                    continue
                group = f[table]
                if _rows_of(group) < n:
                    raise HistoryError(f"{path}: /{table} holds {_rows_of(group)} rows, the checkpoint names {n}")
                out[table] = {name: _rows(d, n) for name, d in group.items()}
            return out
    except HistoryError:
        raise
    except (OSError, KeyError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise HistoryError(f"{path}: unreadable run history ({detail})") from None


def _rows(dataset: h5py.Dataset, n: int) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype):
        return np.asarray(dataset.asstr()[:n], dtype=object)
    return np.asarray(dataset[:n])
