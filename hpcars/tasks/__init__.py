"""Task registry: ``--task NAME`` -> a task object."""

from __future__ import annotations

import importlib

from hpcars.config import ConfigError, TrainConfig
from hpcars.tasks.base import BranchOutcome, ObsMoments, Task
from hpcars.tasks.supervised import Digits, Regression


def make_task(cfg: TrainConfig) -> Task:
    """The task ``cfg.task`` names; an unknown Gymnasium id is a ``ConfigError``."""
    track_obs = cfg.variant == "v2"
    if cfg.task == "regression":
        return Regression(cfg.seed, cfg.batch_size or 2048, track_obs)
    if cfg.task == "digits":
        return Digits(cfg.seed, cfg.batch_size or 256, cfg.hidden, track_obs)
    from hpcars.envs import gym_ids
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
        track_obs=track_obs,
    )


__all__ = ["BranchOutcome", "ObsMoments", "Task", "make_task"]
