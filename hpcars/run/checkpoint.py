"""HDF5 checkpoints: the whole state of a run, written atomically, read back exactly.

The layout is documented in ``docs/checkpoint-format.md``; plain h5py or h5dump can
read it without hpcars. Files live in ``RUN_DIR/checkpoints/ckpt-ITERATION.h5``; the
one with the highest iteration is the latest. A write goes to a hidden temp file in
the same directory, is flushed and fsynced, and is renamed over the final name, so a
crash at any moment leaves every earlier checkpoint intact; the oldest files beyond
``keep`` are removed only after the new one is in place. Reading checks the format
name and version and raises ``CheckpointError`` (one line) for a truncated, corrupt,
foreign or newer file, which is never modified.

Nothing about random number generators needs saving: noise, mini-batches and env
seeds are all functions of (seed, iteration, member, index), so ``iteration`` is the
generator counter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcars.algorithm.noise import DEFAULT_SCHEME, SCHEME_1
from hpcars.algorithm.runningstat import RunningStat
from hpcars.errors import CheckpointError, HistoryUnavailable
from hpcars.run import history as run_history

FORMAT = "hpcars-checkpoint"
#: 2 added /population; 3 /buffers, /task and init_from; 4 the initial evaluation, provenance and the population's
#: origin; 5 the metrics and update log in RUN_DIR/history.h5 (attribute ``history``); older files are still read
FORMAT_VERSION = 5
NOISE_SCHEME = DEFAULT_SCHEME  # what a fresh run uses; each checkpoint records its own
DIRECTORY = "checkpoints"
_NAME = re.compile(r"ckpt-(\d+)\.h5$")


@dataclass(frozen=True)
class Member:
    """One population member: its parameters (name -> float32 array) and latest fitness."""

    params: dict[str, np.ndarray]
    fitness: float = float("nan")


@dataclass(frozen=True)
class BestPolicy:
    """The parameters with the best evaluation score so far, and how they scored."""

    iteration: int
    score: float
    spread: float  # the evaluation's standard deviation (RL: of the returns; NaN where none)
    params: dict[str, np.ndarray]  # the evaluated member's model parameters, name -> float32
    obs_stat: RunningStat | None = None  # the V2 statistics whose normaliser was in force


@dataclass(frozen=True)
class Checkpoint:
    config: dict[str, Any]
    iteration: int
    total_episodes: int
    total_samples: int
    skipped_steps: int
    elapsed_s: float
    members: list[Member]
    obs_stat: RunningStat | None = None
    #: (first iteration run at this world size, world size), in order
    world_sizes: list[tuple[int, int]] = field(default_factory=list)
    reached_target: dict[str, Any] | None = None
    #: the metrics table so far, column name -> values (one per iteration)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    params_sha256: str = ""
    #: population search state (``hpcars.population.state``), name -> array; None in format 1
    population: dict[str, np.ndarray] | None = None
    #: the model's buffers (e.g. BatchNorm statistics), never perturbed; V2's normaliser excluded
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    #: the task's own state (e.g. the priorities of prioritized mini-batches), name -> array
    task_state: dict[str, np.ndarray] = field(default_factory=dict)
    #: where θ₀ came from (``--init-from``): path, file_sha256, params_sha256, loaded, kept
    init_from: dict[str, Any] | None = None
    #: a compressed search space (``hpcars.algorithm.spaces``): ``z`` [M, d] and the space's structure
    search_space: dict[str, np.ndarray] = field(default_factory=dict)
    #: its description (kind, searched dimension, sparsity, bits, compressed bytes)
    search_space_info: dict[str, Any] | None = None
    #: --schedule async: every update sequenced so far (``hpcars.run.update_log``), name -> array
    async_log: dict[str, np.ndarray] = field(default_factory=dict)
    #: --restart: the stall watch and the restarts so far (``hpcars.run.restarts``), name -> array
    restart: dict[str, np.ndarray] = field(default_factory=dict)
    #: the best evaluated parameters so far (None before the first evaluation)
    best: BestPolicy | None = None
    #: the evaluation of θ₀ at iteration 0 (summary.json's ``initial``; None before format 4)
    initial: dict[str, float] | None = None
    #: the software the run was made with (``hpcars.run.provenance.versions()``)
    provenance: dict[str, str | None] | None = None
    #: rows of ``RUN_DIR/history.h5`` that belong to this checkpoint, table -> count (``hpcars.run.history``).
    #: None: ``metrics`` and ``async_log`` are stored in the file itself. When set, ``write`` stores
    #: only the counts (the caller appended the rows) and ``read`` loads those rows into the fields
    history: dict[str, int] | None = None
    #: how the run regenerates its directions (``hpcars.algorithm.noise``); files before it: scheme 1
    noise_scheme: str = SCHEME_1
    #: branches per batched call (``ARSTrainer.width``); 0: written before it was recorded, when every
    #: call was --branch-batch wide (within --branch-memory), which a resume of such a file keeps
    call_width: int = 0


def params_sha256(flat: np.ndarray) -> str:
    """SHA-256 of parameters as little-endian float32 bytes, concatenated in ``param_names`` order."""
    return hashlib.sha256(np.ascontiguousarray(flat, dtype="<f4").tobytes()).hexdigest()


def directory(run_dir: Path) -> Path:
    return Path(run_dir) / DIRECTORY


def listing(run_dir: Path) -> list[Path]:
    """Complete checkpoint files of a run, oldest first (temp files are ignored)."""
    folder = directory(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def iteration_of(path: Path) -> int:
    """The iteration in a checkpoint file's name."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named like a checkpoint (ckpt-ITERATION.h5)")
    return int(match.group(1))


def latest(run_dir: Path) -> Path | None:
    files = listing(run_dir)
    return files[-1] if files else None


def locate(target: Path) -> Path | None:
    """A checkpoint file as given, or a run directory's latest checkpoint (None: none there)."""
    target = Path(target)
    return target if target.is_file() else latest(target)


def write(run_dir: Path, ckpt: Checkpoint, keep: int) -> Path:
    """Write ``ckpt`` atomically and keep the newest ``keep`` files."""
    folder = directory(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"ckpt-{ckpt.iteration:08d}.h5"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            _fill(f, ckpt)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    for old in listing(run_dir)[:-keep]:
        old.unlink()
    return final


def _fill(f: h5py.File, ckpt: Checkpoint) -> None:
    f.attrs.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        noise_scheme=ckpt.noise_scheme,
        call_width=ckpt.call_width,
        iteration=ckpt.iteration,
        total_episodes=ckpt.total_episodes,
        total_samples=ckpt.total_samples,
        skipped_steps=ckpt.skipped_steps,
        elapsed_s=ckpt.elapsed_s,
        params_sha256=ckpt.params_sha256,
    )
    as_json: dict[str, Any] = dict(
        config=ckpt.config,
        reached_target=ckpt.reached_target,
        param_names=list(ckpt.members[0].params),
        init_from=ckpt.init_from,
        search_space=ckpt.search_space_info,
        initial=ckpt.initial,
        provenance=ckpt.provenance,
    )
    for key, text in as_json.items():
        f.attrs[key] = json.dumps(text)
    if ckpt.history is not None:
        f.attrs["history"] = json.dumps(ckpt.history)
    f.create_dataset("world_sizes", data=np.array(ckpt.world_sizes, dtype=np.int64).reshape(-1, 2))
    f.create_dataset("fitness", data=np.array([m.fitness for m in ckpt.members], dtype=np.float64))
    members = f.create_group("members")
    for index, member in enumerate(ckpt.members):
        group = members.create_group(f"{index:05d}")
        for name, value in member.params.items():
            group.create_dataset(name, data=np.asarray(value, dtype="<f4"))
    if ckpt.population is not None:
        group = f.create_group("population")
        for name, value in ckpt.population.items():
            group.create_dataset(name, data=value)
    for group_name, arrays in (
        ("buffers", ckpt.buffers),
        ("task", ckpt.task_state),
        ("search_space", ckpt.search_space),
        ("async_log", {} if ckpt.history is not None else ckpt.async_log),
        ("restart", ckpt.restart),
    ):
        if arrays:
            group = f.create_group(group_name)
            for name, value in arrays.items():
                group.create_dataset(name, data=np.asarray(value))
    if ckpt.obs_stat is not None:
        _write_stat(f.create_group("obs_stat"), ckpt.obs_stat)
    if ckpt.best is not None:
        _write_best(f.create_group("best"), ckpt.best)
    if ckpt.history is None:  # format 4 (format 5: the tables live in RUN_DIR/history.h5)
        _write_metrics(f.create_group("metrics"), ckpt.metrics)


def _write_best(best: h5py.Group, policy: BestPolicy) -> None:
    best.attrs.update(iteration=policy.iteration, score=policy.score, spread=policy.spread)
    params = best.create_group("params")
    for name, value in policy.params.items():
        params.create_dataset(name, data=np.asarray(value, dtype="<f4"))
    if policy.obs_stat is not None:
        _write_stat(best.create_group("obs_stat"), policy.obs_stat)


def _write_metrics(metrics: h5py.Group, table: dict[str, np.ndarray]) -> None:
    for column, values in table.items():
        values = np.asarray(values)
        if values.dtype.kind in "OUS":  # text columns (e.g. why a step was skipped)
            metrics.create_dataset(column, data=values.astype(object), dtype=h5py.string_dtype())
        else:
            metrics.create_dataset(column, data=values.astype(np.float64))


def _write_stat(group: h5py.Group, stat: RunningStat) -> None:
    group.create_dataset("count", data=np.float64(stat.count))
    group.create_dataset("mean", data=stat.mean)
    group.create_dataset("m2", data=stat.m2)


def _read_stat(group: h5py.Group) -> RunningStat:
    return RunningStat(float(group["count"][()]), np.asarray(group["mean"]), np.asarray(group["m2"]))


def _read_best(f: h5py.File, names: list[str]) -> BestPolicy | None:
    if "best" not in f:
        return None
    g = f["best"]
    return BestPolicy(
        iteration=int(g.attrs["iteration"]),
        score=float(g.attrs["score"]),
        spread=float(g.attrs["spread"]),
        params={n: np.asarray(g["params"][n]) for n in names},
        obs_stat=_read_stat(g["obs_stat"]) if "obs_stat" in g else None,
    )


def _arrays(f: h5py.File, group: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in f[group].items()} if group in f else {}


def _column(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype):
        return np.asarray(dataset.asstr()[()], dtype=object)
    return np.asarray(dataset)


def _checked(f: h5py.File, path: Path) -> None:
    kind = f.attrs.get("format")
    if kind != FORMAT:
        raise CheckpointError(f"{path}: not an hpcars checkpoint (format attribute {kind!r})")
    version = int(f.attrs["format_version"])
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer hpcars (format version {version}; this one reads up to {FORMAT_VERSION})"
        )


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return CheckpointError(f"{path}: unreadable or incomplete checkpoint ({detail})")


def read_config(path: Path) -> dict[str, Any]:
    """Only the run's options (no parameters): cheap, for deciding whether to resume."""
    try:
        with h5py.File(path, "r") as f:
            _checked(f, Path(path))
            return json.loads(f.attrs["config"])
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise _unreadable(Path(path), err) from None


def read(path: Path, tables: bool = True) -> Checkpoint:
    """Load a checkpoint; ``CheckpointError`` for anything that is not a usable one.

    Its metrics table and update log come from the file itself (format ≤ 4, or written
    without a run history) or from ``RUN_DIR/history.h5`` beside its folder (format 5):
    ``HistoryUnavailable`` when that file cannot give them — the run's history, not the
    checkpoint, is at fault. ``tables=False`` skips the history file (for readers that need
    only parameters, e.g. of a checkpoint copied out of its run directory)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            _checked(f, path)
            names = json.loads(f.attrs["param_names"])
            fitness = np.asarray(f["fitness"])
            members = [
                Member({n: np.asarray(f["members"][key][n]) for n in names}, float(fitness[i]))
                for i, key in enumerate(sorted(f["members"]))
            ]
            obs_stat = _read_stat(f["obs_stat"]) if "obs_stat" in f else None
            ckpt = Checkpoint(
                config=json.loads(f.attrs["config"]),
                iteration=int(f.attrs["iteration"]),
                total_episodes=int(f.attrs["total_episodes"]),
                total_samples=int(f.attrs["total_samples"]),
                skipped_steps=int(f.attrs["skipped_steps"]),
                elapsed_s=float(f.attrs["elapsed_s"]),
                members=members,
                obs_stat=obs_stat,
                world_sizes=[(int(first), int(size)) for first, size in np.asarray(f["world_sizes"])],
                reached_target=json.loads(f.attrs["reached_target"]),
                metrics={c: _column(f["metrics"][c]) for c in f["metrics"]} if "metrics" in f else {},
                params_sha256=str(f.attrs["params_sha256"]),
                noise_scheme=str(f.attrs.get("noise_scheme", SCHEME_1)),
                call_width=int(f.attrs.get("call_width", 0)),
                population={k: np.asarray(v) for k, v in f["population"].items()} if "population" in f else None,
                buffers=_arrays(f, "buffers"),
                task_state=_arrays(f, "task"),
                init_from=json.loads(f.attrs.get("init_from", "null")),
                search_space=_arrays(f, "search_space"),
                search_space_info=json.loads(f.attrs.get("search_space", "null")),
                async_log=_arrays(f, "async_log"),
                restart=_arrays(f, "restart"),
                best=_read_best(f, names),
                initial=json.loads(f.attrs.get("initial", "null")),
                provenance=json.loads(f.attrs.get("provenance", "null")),
                history=json.loads(f.attrs.get("history", "null")),
            )
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise _unreadable(path, err) from None
    if ckpt.history is None or not tables:
        return ckpt
    try:
        # a population's members table is for readers of history.h5 (analysis); a resume needs none of it
        rows = run_history.read(path.parent.parent, {**ckpt.history, "members": 0})
    except run_history.HistoryError as err:
        raise HistoryUnavailable(f"{err} (the metrics and update log of {path.name})") from None
    return dataclasses.replace(ckpt, metrics=rows["metrics"], async_log=rows["async_log"])
