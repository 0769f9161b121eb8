"""``hpcars.fit``: train from Python, with your own objects, on the MPI world you are in.

    result = hpcars.fit(problem, directions=32, top_directions=8, step_size=0.02, run_dir="runs/a")

``task`` is what ``--task`` names on the command line, or the object itself:

* a ``SupervisedProblem`` or an ``Objective`` (``hpcars.tasks.problems``), or any object
  with the ``Task`` protocol (``hpcars.tasks.base``);
* a ``torch.nn.Module`` together with ``reward=fn(model, context) -> float``
  (``hpcars.tasks.module``: one forward per branch, on hpcars' own copy of the module);
* a string: ``regression``, ``digits``, a Gymnasium id or ``package.module:factory``.

The options are the command line's names with underscores (``--step-size`` ->
``step_size=``), ``preset=`` included, or a ``TrainConfig`` as ``config`` (options given as
keywords override its fields). The values go, as values, through the resolver the command
line uses (``hpcars.cli.options.resolve``: defaults, presets, ``--resume``'s saved options,
the config file, then the checks), so a call and ``python -m hpcars.train`` with the same options run the same
configuration: the same run directory, and the same ``params_sha256`` on any number
of ranks. Bad input raises ``hpcars.InputError`` (every rank together) whose text is
the command line's one line: ``ConfigError`` for an option given to ``fit`` itself,
``Refused`` for one the parser or a rank's set-up refused.

Called under ``mpirun`` (every rank calls ``fit`` with the same arguments), it trains
on all ranks; otherwise in this one process. Rank 0 writes the run directory and
prints the progress lines to ``out`` (default ``sys.stdout``; ``quiet=True``: warnings
only, ``verbose=True``: every rank's set-up too; ``hpcars.run.console``). Every rank gets the same
``Result``. ``callback(record)`` sees each iteration's ``IterationRecord`` on every
rank; returning ``False`` (on any rank) ends the run after that iteration, with a
final evaluation, a checkpoint and ``summary.json``, as if it were the last.

``fit`` neither pins thread pools nor reseeds global generators (``hpcars.pin_threads``
does the former if you want it); it installs hpcars' stop-signal handler
(SIGTERM/SIGUSR1/SIGUSR2: checkpoint and stop) for the call's duration when called
from the main thread, and gives the previous handlers back.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.models import Normalized
from hpcars.cli.options import resolve
from hpcars.config import TrainConfig
from hpcars.errors import ConfigError, DivergenceError, InputError, NonFiniteRewardError
from hpcars.run.loop import Callback, RunResult, run
from hpcars.run.signals import StopRequest
from hpcars.runtime.agreement import agree
from hpcars.runtime.comm import Transport, make_transport
from hpcars.tasks import IN_MEMORY, Task
from hpcars.tasks.module import ModuleReward, loaded_copy, module_objective
from hpcars.tasks.objective import ObjectiveTask
from hpcars.tasks.plugin import task_from
from hpcars.tasks.problems import Objective, SupervisedProblem

TaskLike = str | SupervisedProblem | Objective | Task | nn.Module
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Result:
    """What ``fit`` returns, the same on every rank.

    ``params`` are the final parameters (of the best member by fitness; plain ARS: θ),
    ``best_params`` those of the best evaluation (``None`` before any evaluation), both
    flat float32 vectors in the model's ``named_parameters`` order; ``model`` and
    ``best_model`` are copies of the task's model holding them (with V2 inputs, its
    normaliser included), ``None`` for an ``Objective``. ``summary`` is ``summary.json``
    (``None`` for a run stopped by a signal)."""

    params: np.ndarray
    best_params: np.ndarray | None
    model: nn.Module | None
    best_model: nn.Module | None
    summary: dict[str, Any] | None
    run_dir: Path
    params_sha256: str
    iterations: int
    interrupted_by: int  # the stop signal's number; 0 when the run ended on its own


def fit(
    task: TaskLike | None = None,
    config: TrainConfig | None = None,
    *,
    reward: ModuleReward | None = None,
    callback: Callable[[Any], object] | None = None,
    out: TextIO | None = None,
    transport: Transport | None = None,
    **options: Any,
) -> Result:
    """Train ``task`` with ARS and return the ``Result`` (see the module's text)."""
    if "task" in options:
        raise ConfigError("task", "is fit's first argument")
    if task is None:
        task = config.task if config is not None else "regression"
    transport = transport or make_transport()
    name = _task_name(task, reward)
    given = _given(config, options, name)
    cfg = agree(transport, lambda: resolve(given))
    stop = StopRequest()
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        stop.install()
    try:
        done = run(cfg, transport, out, stop, _task_source(task, reward), _checked(callback), "hpcars.fit")
    except (InputError, NonFiniteRewardError):
        raise  # refusals every rank agreed on, or met together
    except DivergenceError:
        if transport.size > 1:  # the others may be anywhere: take the job down, as the command line does
            transport.abort(3)
        raise
    except BaseException as err:
        if transport.size > 1:
            print(f"hpcars.fit: rank {transport.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            transport.abort(1)
        raise
    finally:
        if in_main:
            stop.uninstall()
    return _result(done, transport, task)


def _task_name(task: TaskLike, reward: ModuleReward | None) -> str:
    if isinstance(task, nn.Module) != (reward is not None):
        raise ConfigError("reward", "give reward=fn(model, context) -> float with a torch module, and only then")
    if isinstance(task, str):
        return task
    name = getattr(task, "name", "") or type(task).__name__
    return IN_MEMORY + name


def _given(config: TrainConfig | None, options: dict[str, Any], task: str) -> dict[str, Any]:
    """The option values ``fit`` was given: ``config``'s fields that differ from the defaults,
    then ``options``, then the task — for ``cli.options.resolve``, as the command line's are."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    if config is not None:
        values.update({n: getattr(config, n) for n, f in fields.items() if getattr(config, n) != f.default})
    values.update(options)
    values["task"] = task
    return values


def _task_source(task: TaskLike, reward: ModuleReward | None) -> Callable[[TrainConfig], Task]:
    from hpcars.tasks import make_task

    if isinstance(task, str):
        return make_task

    def source(cfg: TrainConfig) -> Task:
        made = module_objective(task, reward) if isinstance(task, nn.Module) and reward else task
        return task_from(made, cfg)

    return source


def _checked(callback: Callable[[Any], object] | None) -> Callback | None:
    if callback is not None and not callable(callback):
        raise ConfigError("callback", f"must be a function of the iteration's record (got {callback!r})")
    return callback


def _result(done: RunResult, transport: Transport, task: TaskLike) -> Result:
    trainer = done.trainer
    theta = trainer.theta.detach().cpu()
    # rank 0 wrote summary.json; it travels to every rank (run directories need not be shared)
    written = done.run_dir / SUMMARY_FILE
    text = written.read_bytes() if transport.rank == 0 and written.exists() else b""
    blobs = transport.allgather_bytes(text)
    summary = json.loads(blobs[0]) if blobs[0] else None

    template: nn.Module | None = trainer.models[0].module
    if isinstance(trainer.task, ObjectiveTask):  # the trainer's model is the bare vector
        template = task if isinstance(task, nn.Module) else None
    best_flat = best_model = None
    if done.best is not None:
        best_flat = np.concatenate([done.best.params[n].reshape(-1) for n in trainer.spec.names]).astype(np.float32)
        if template is not None:
            best_model = _loaded(template, best_flat, done.best.obs_stat)
    model = _loaded(template, theta.numpy(), trainer.obs_stat) if template is not None else None
    return Result(
        params=theta.numpy().copy(),
        best_params=best_flat,
        model=model,
        best_model=best_model,
        summary=summary,
        run_dir=done.run_dir,
        params_sha256=trainer.params_sha256(),
        iterations=trainer.iteration,
        interrupted_by=done.interrupted_by,
    )


def _loaded(template: nn.Module, flat: np.ndarray, obs_stat: Any) -> nn.Module:
    model = loaded_copy(template, torch.from_numpy(np.ascontiguousarray(flat)))
    if obs_stat is not None and isinstance(model, Normalized):  # the V2 wrapper's normaliser
        mean, inv_std = obs_stat.normaliser()
        model.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.inv_std.copy_(torch.as_tensor(inv_std, dtype=torch.float32))
    return model.cpu()
