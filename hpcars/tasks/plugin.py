"""``--task package.module:factory``: load a user's task.

The module is imported (the working directory is searched too, after the usual
places, so ``examples.wine:problem`` works from a checkout under ``mpirun`` and
the console scripts alike) and the factory is called — with the run's
``TrainConfig`` if it takes an argument — while torch's CPU generator and NumPy's
global generator are seeded from the run seed (so ``nn.Linear``'s default
initialisation is the same on every rank and every run); both generators are given
back to the caller as they were before (``torch.random.fork_rng``), so loading a
task changes no global random state. A factory that wants its own seed reads
``config.seed``. What it returns becomes a task (``task_from``):

* ``SupervisedProblem`` -> ``supervised.ProblemTask``;
* ``Objective`` -> ``objective.ObjectiveTask``;
* anything with the attributes and methods of the ``Task`` protocol -> itself.

Then the task is probed once (a forward pass / a call on θ₀) so that a factory
returning the wrong thing, a model that does not fit its data, or an objective
that returns mis-shaped or non-finite rewards is refused before any work starts:
every such problem is a ``ConfigError`` for ``--task`` naming the task.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

import numpy as np
import torch

from hpcars.algorithm.branches import BatchedModel
from hpcars.algorithm.noise import stream_key
from hpcars.config import TrainConfig
from hpcars.errors import ConfigError, ObjectiveRewardError
from hpcars.tasks.base import Task
from hpcars.tasks.objective import ObjectiveTask, call_objective
from hpcars.tasks.problems import LOSSES, METRICS, Objective, SupervisedProblem
from hpcars.tasks.sampling import PriorityParams
from hpcars.tasks.supervised import ProblemTask, per_branch

FACTORY_STREAM = 0xFAC7
TASK_ATTRIBUTES = ("input_dim", "sample_unit", "episodes_per_branch", "eval_units", "eval_fields", "eval_columns")
TASK_METHODS = ("build_model", "begin_iteration", "rewards", "evaluate_units", "summarize", "describe")


def is_plugin(task: str) -> bool:
    """``module:factory`` (a dotted Python name, a colon, a Python name): not Gymnasium's
    ``module:Env-v0``, nor ``reasoning-gym:NAME`` (no module is called ``reasoning-gym``)."""
    module, _, attr = task.rpartition(":")
    return bool(module) and all(part.isidentifier() for part in module.split(".")) and attr.isidentifier()


def _call_factory(factory: Any, cfg: TrainConfig) -> Any:
    try:
        takes_config = len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):  # a builtin or C callable without a signature
        takes_config = False
    seed = stream_key(cfg.seed ^ FACTORY_STREAM, 0, 0, 0)
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):  # the caller's generators are given back untouched
        torch.manual_seed(seed & (2**63 - 1))
        np.random.seed(seed & (2**32 - 1))
        try:
            return factory(cfg) if takes_config else factory()
        finally:
            np.random.set_state(numpy_state)


def load_factory(spec: str) -> Any:
    module_name, _, attr = spec.rpartition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # an import error, or the module raised while importing
        raise ConfigError("--task", f"{spec}: cannot import {module_name!r}: {type(err).__name__}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError("--task", f"{spec}: {module_name!r} has no callable {attr!r}")
    return factory


def make_plugin_task(cfg: TrainConfig) -> Task:
    spec = cfg.task
    factory = load_factory(spec)
    try:
        made = _call_factory(factory, cfg)
    except Exception as err:  # whatever the user's code raised
        raise ConfigError("--task", f"{spec}: the factory raised {type(err).__name__}: {err}") from None
    return task_from(made, cfg)


def task_from(made: Any, cfg: TrainConfig) -> Task:
    """The task for what a factory returned (or what ``hpcars.fit`` was given), probed once;
    anything unusable is a ``ConfigError`` for ``--task`` naming ``cfg.task``."""
    spec = cfg.task
    task: Task
    try:
        if isinstance(made, SupervisedProblem):
            task = _problem_task(made, cfg)
        elif isinstance(made, Objective):
            task = _objective_task(made, cfg)
        elif all(hasattr(made, a) for a in TASK_ATTRIBUTES + TASK_METHODS):
            task = made
        else:
            raise ValueError(
                f"the factory returned {type(made).__name__}; expected a SupervisedProblem, an Objective or a Task"
            )
    except (ValueError, TypeError, RuntimeError, ObjectiveRewardError) as err:
        raise ConfigError("--task", f"{spec}: {err}") from None
    if not getattr(task, "name", ""):
        task.name = spec
    return task


def _problem_task(problem: SupervisedProblem, cfg: TrainConfig) -> ProblemTask:
    if isinstance(problem.loss, str) and problem.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)} or a function (got {problem.loss!r})")
    if isinstance(problem.metric, str) and problem.metric not in METRICS:
        raise ValueError(f"metric must be None, one of {', '.join(METRICS)} or a function (got {problem.metric!r})")
    task = problem_task(problem, cfg)
    # probe: the model fits the data and the loss (and metric) give one finite value per sample
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    theta = model.spec.flatten(model.module)[None].expand(2, -1)
    batch = task.begin_iteration(0, 0, torch.device("cpu"))
    try:
        out = model(theta, batch.x[:8])
    except RuntimeError as err:
        raise ValueError(f"the model does not fit the training data: {err}") from None
    for what, fn in (("loss", task.loss_fn), ("metric", task.metric_fn)):
        if fn is None:
            continue
        values = per_branch(fn, out, batch.y[:8])
        if values.shape != (2, min(8, len(batch.y))):
            raise ValueError(f"{what} must return one value per sample; got shape {tuple(values.shape)} for 8 samples")
        if not torch.isfinite(values).all():
            raise ValueError(f"{what} of the initial model is not finite on the first mini-batch")
    return task


def problem_task(problem: SupervisedProblem, cfg: TrainConfig) -> ProblemTask:
    """A ``SupervisedProblem`` with the run's batch, reward and sampling options."""
    if cfg.reward == "metric" and problem.metric is None:
        raise ConfigError("--reward", f"metric needs a task with a metric; {cfg.task} has none (use loss)")
    priority = None
    if cfg.batch_priority == "loss":
        priority = PriorityParams(cfg.priority_alpha, cfg.priority_beta, cfg.priority_beta_iterations, cfg.priority_eps)
    task = ProblemTask(
        problem,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        track_obs=cfg.variant == "v2",
        reward=cfg.reward,
        priority=priority,
    )
    if cfg.variant == "v2" and task.input_dim == 0:
        raise ConfigError("--variant", f"v2 needs inputs of shape [n, features]; {cfg.task}'s are {task.train_x.shape}")
    return task


def _objective_task(objective: Objective, cfg: TrainConfig) -> ObjectiveTask:
    if cfg.variant == "v2":
        raise ConfigError("--variant", f"v2 normalises model inputs; the objective {cfg.task} has none (use v1)")
    if cfg.reward != "loss" or cfg.batch_priority != "uniform":
        raise ConfigError("--reward" if cfg.reward != "loss" else "--batch-priority", "only for supervised problems")
    if not (isinstance(objective.size, int) and objective.size >= 1):
        raise ValueError(f"size must be an integer >= 1 (got {objective.size!r})")
    task = ObjectiveTask(objective, cfg.seed, cfg.branch_batch)
    rewards = call_objective(objective, task.init[None].expand(cfg.branch_batch, -1), task.begin_iteration(0, 0, None))
    if not np.isfinite(rewards).all():
        raise ValueError("fn returned non-finite rewards at θ₀")
    return task
