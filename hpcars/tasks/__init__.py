"""Task registry: ``--task NAME`` -> a task object.

``regression`` and ``digits`` are built in; ``package.module:factory`` is a plug-in
(``hpcars.tasks.plugin``); anything else is a Gymnasium id (``module:Env-v0``
imports ``module`` first, so that it can register the env).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hpcars.config import ConfigError, TrainConfig
from hpcars.tasks.base import BranchOutcome, ObsMoments, Task

#: how ``cfg.task`` names a task that ``hpcars.fit`` was given as an object (it has no importable name)
IN_MEMORY = "memory:"

#: what builds a run's task from its config: ``make_task``, or ``hpcars.fit``'s own for an object in memory
TaskSource = Callable[[TrainConfig], Task]


def _supervised_only(cfg: TrainConfig, why: str) -> None:
    """Refuse the supervised-only options for a task that cannot honour them."""
    if cfg.reward != "loss":
        raise ConfigError("--reward", f"metric needs a task with a metric; {cfg.task} has none (use loss)")
    if cfg.batch_priority != "uniform":
        raise ConfigError("--batch-priority", f"loss needs a finite training set; {why}")


def make_task(cfg: TrainConfig) -> Task:
    """The task ``cfg.task`` names; an unknown one is a ``ConfigError``."""
    from hpcars.tasks.plugin import is_plugin, make_plugin_task, problem_task
    from hpcars.tasks.supervised import Regression, digits_problem

    if cfg.env_backend != "gymnasium" and (cfg.task in ("regression", "digits") or is_plugin(cfg.task)):
        raise ConfigError("--env-backend", f"{cfg.env_backend} steps Gymnasium ids; {cfg.task} is not one")
    if cfg.task == "regression":
        _supervised_only(cfg, "regression draws fresh samples every iteration")
        return Regression(cfg.seed, cfg.batch_size or 2048, cfg.variant == "v2")
    if cfg.task == "digits":
        return problem_task(digits_problem(cfg.seed, cfg.hidden), cfg)
    if cfg.task == "countdown":
        return _countdown_task(cfg)
    if cfg.task.startswith(IN_MEMORY):
        raise ConfigError("--task", f"{cfg.task} was an object given to hpcars.fit: give it to hpcars.fit again")
    if is_plugin(cfg.task):
        return make_plugin_task(cfg)
    _supervised_only(cfg, f"{cfg.task} is a reinforcement-learning task")
    return _gym_task(cfg)


def _countdown_task(cfg: TrainConfig) -> Task:
    from hpcars.tasks.verifier import VALIDATION_START, CountdownTask

    _supervised_only(cfg, "countdown draws new prompts every iteration")
    if cfg.variant != "v1":
        raise ConfigError("--variant", "countdown's inputs are tokens: v2's input normaliser does not apply (use v1)")
    held_start = VALIDATION_START if cfg.eval_split == "validation" else 0
    if cfg.hf_model:
        from hpcars.tasks.hf_lm import check_directory

        problem = check_directory(cfg.hf_model)
        if problem:
            raise ConfigError("--hf-model", problem)
    return CountdownTask(cfg.seed, cfg.prompts, cfg.eval_prompts, cfg.format_reward, held_start, cfg.hf_model)


def _gym_task(cfg: TrainConfig) -> Task:
    from hpcars.tasks.envs import gym_ids
    from hpcars.tasks.rl import GymTask

    module, _, env_id = cfg.task.rpartition(":")  # Gymnasium's "module:Env-v0": import, then make
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError("--task", f"cannot import {module!r} to register {env_id}: {err}") from None
    ids = gym_ids()
    if not ids:
        raise ConfigError("--task", f"{cfg.task} needs Gymnasium: pip install 'hpcars[rl]'")
    if env_id not in ids:
        close = [i for i in ids if i.split("-")[0].lower() == env_id.split("-")[0].lower()]
        hint = f"; registered versions: {', '.join(close)}" if close else ""
        raise ConfigError("--task", f"{env_id!r} is not a registered Gymnasium id{hint}")
    return GymTask(
        env_id,
        cfg.seed,
        policy=cfg.policy,
        hidden=cfg.hidden,
        shift=cfg.shift,
        eval_episodes=cfg.eval_episodes,
        branch_batch=cfg.branch_batch,
        track_obs=cfg.variant == "v2",
        env_backend=cfg.env_backend,
        clip_actions=cfg.clip_actions,
    )


__all__ = ["BranchOutcome", "ObsMoments", "Task", "TaskSource", "make_task"]
