"""Sweep specifications: a TOML file that expands to one training run per grid point and seed.

    name = "regression-step"
    seeds = [0, 1, 2]              # a sweep axis by default: ARS varies a lot by seed
                                   # (or seeds = { start = 0, count = 100 })

    [base]                         # hpcars.train options shared by every run
    task = "regression"
    iterations = 300

    [grid]                         # every combination of these values
    step-size = [0.01, 0.02]

    [resources]                    # per run; see Resources
    tasks_per_node = 2             # MPI ranks per node (Slurm tasks)

Each run's options are checked with hpcars' own validation before anything is
submitted; a bad value is a one-line ``SpecError`` naming the run and the option.
``SweepSpec.check_tasks`` also refuses, once, a task that every run naming it would
refuse at start: an unregistered Gymnasium id or a plug-in module that does not exist.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpcars.cli.options import parse_args
from hpcars.config import BUILTIN_TASKS, TrainConfig
from hpcars.errors import ConfigError, PathProblem
from hpcars.run.paths import read_text


class SpecError(ValueError):
    """A bad sweep spec; ``str(err)`` is one line."""


@dataclass(frozen=True)
class Resources:
    """What one run asks of Slurm (ignored by the local executor but timeout_min)."""

    nodes: int = 1
    tasks_per_node: int = 2  # MPI ranks per node; the run has nodes × tasks_per_node ranks
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem_gb: int = 0  # 0 = the partition's default
    timeout_min: int = 60
    partition: str = ""
    mpi: str = "pmi2"  # srun --mpi=...: pmi2 for MPICH, pmix for Open MPI
    array_parallelism: int = 64
    signal_delay_s: int = 90  # SIGUSR2 this long before the time limit: checkpoint and requeue

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a name (its directory) and its hpcars.train options."""

    name: str
    options: dict[str, Any]
    seed: int

    def options_argv(self) -> list[str]:
        """The run's hpcars.train options, seed included, without ``--run-dir`` (it depends on the sweep dir)."""
        argv: list[str] = []
        for key, value in {**self.options, "seed": self.seed}.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["--" + key.replace("_", "-"), text]
        return argv

    def argv(self, run_dir: Path) -> list[str]:
        return [*self.options_argv(), "--run-dir", str(run_dir)]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    seeds: tuple[int, ...]
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]]
    resources: Resources = field(default_factory=Resources)

    def runs(self) -> list[RunSpec]:
        keys = sorted(self.grid)
        runs = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            label = ",".join(f"{k}={v}" for k, v in point.items())
            for seed in self.seeds:
                name = _safe(f"{label},seed={seed}" if label else f"seed={seed}")
                runs.append(RunSpec(name, {**self.base, **point}, seed))
        return runs

    def check(self) -> None:
        """Validate every run's options as hpcars.train would."""
        for run in self.runs():
            try:
                parse_args(run.argv(NO_RUN_DIR))
            except ConfigError as err:
                raise SpecError(f"run {run.name}: {err}") from None

    def check_tasks(self) -> None:
        """Refuse, once per task, what each run naming it would refuse at start (``check_task``)."""
        checked: set[str] = set()
        for run in self.runs():
            cfg = parse_args(run.argv(NO_RUN_DIR))
            if cfg.task in checked:
                continue
            checked.add(cfg.task)
            try:
                check_task(cfg)
            except ConfigError as err:
                raise SpecError(f"run {run.name}: {err}") from None


NO_RUN_DIR = Path("/nonexistent/run-dir")


def check_task(cfg: TrainConfig) -> None:
    """``ConfigError`` (hpcars' own, as the run would print it) for a plug-in whose module does not
    exist or a Gymnasium id that is not registered. Cheap: a plug-in's module is looked up, not
    imported, and no task is built; only a task found wanting goes through hpcars' own loading,
    which then refuses it with the message the run would print."""
    from hpcars.tasks import make_task
    from hpcars.tasks.plugin import is_plugin, load_factory

    if cfg.task in BUILTIN_TASKS and not cfg.hf_model:  # --hf-model: its directory is checked by make_task
        return
    if is_plugin(cfg.task):
        if not _module_exists(cfg.task.rpartition(":")[0]):
            load_factory(cfg.task)  # refuses; or imports it from the working directory, as the run would
        return
    if not _gym_id_registered(cfg.task):
        make_task(cfg)  # refuses, naming the id and its registered versions


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # a missing parent package, or one that raises while importing
        return False


def _gym_id_registered(task: str) -> bool:
    """``Env-v0`` is registered, or ``module:Env-v0`` is once ``module`` is imported (as hpcars does)."""
    from hpcars.tasks.envs import gym_ids

    module, _, env_id = task.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except Exception:
            return False
    return env_id in gym_ids()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9=,._-]", "_", text)


def _seeds(path: Path, seeds: Any) -> list[int]:
    """``seeds``: a list of integers, or a range ``{ start = S, count = C }`` (S, S+1, ... S+C-1)."""
    if isinstance(seeds, dict):
        start, count = seeds.get("start", 0), seeds.get("count")
        if set(seeds) - {"start", "count"} or not all(isinstance(v, int) and v >= 0 for v in (start, count)):
            raise SpecError(f"{path}: seeds = {{ start = S, count = C }} needs integers S >= 0 and C >= 1")
        seeds = list(range(start, start + count))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise SpecError(f"{path}: seeds must be a non-empty list of integers >= 0, or {{ start = S, count = C }}")
    return seeds


EXAMPLE_DIR = Path(__file__).parent / "examples"  # the packaged example specs


def spec_file(path: Path | str) -> Path:
    """The file of a spec: ``path`` itself, or the packaged example of that name (``jobs/examples/NAME.toml``)."""
    example = EXAMPLE_DIR / f"{path}.toml"
    return example if not Path(path).exists() and example.exists() else Path(path)


def load(path: Path) -> SweepSpec:
    """A spec file, or the name of a packaged example (``jobs/examples/NAME.toml``)."""
    path = spec_file(path)
    try:
        raw = tomllib.loads(read_text(Path(path)))
    except PathProblem as err:
        raise SpecError(str(err)) from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    unknown = set(raw) - {"name", "seeds", "base", "grid", "resources"}
    if unknown:
        raise SpecError(f"{path}: unknown keys {sorted(unknown)}; allowed: name, seeds, base, grid, resources")
    seeds = _seeds(path, raw.get("seeds", [0]))
    grid = raw.get("grid", {})
    for key, values in grid.items():
        if not (isinstance(values, list) and values):
            raise SpecError(f"{path}: grid.{key} must be a non-empty list")
    for key in ("seed", "run-dir", "run_dir", "resume"):
        if key in raw.get("base", {}) or key in grid:
            raise SpecError(f"{path}: {key} is set by the sweep itself (use seeds = [...])")
    known = {f.name for f in dataclasses.fields(Resources)}
    res = raw.get("resources", {})
    bad = set(res) - known
    if bad:
        raise SpecError(f"{path}: unknown resources {sorted(bad)}; allowed: {', '.join(sorted(known))}")
    for key, value in res.items():
        kind = type(getattr(Resources(), key))
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise SpecError(f"{path}: resources.{key} must be {'an integer >= 0' if kind is int else 'a string'}")
    resources = Resources(**res)
    if resources.nodes < 1 or resources.tasks_per_node < 1:
        raise SpecError(f"{path}: resources.nodes and resources.tasks_per_node must be >= 1")
    spec = SweepSpec(
        name=_safe(str(raw.get("name", Path(path).stem))),
        seeds=tuple(seeds),
        base=dict(raw.get("base", {})),
        grid={k: tuple(v) for k, v in grid.items()},
        resources=resources,
    )
    spec.check()
    return spec
