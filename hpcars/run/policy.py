"""A trained model as a checkpoint holds it, ready to use: the loader of ``play`` and ``export``.

``load_policy(target, which)`` reads a run directory's latest checkpoint (or the
given file), rebuilds the task and its model exactly as training did (V2 wrapper,
buffers), loads the chosen parameters and, for V2, the normaliser that was in force
with them:

* ``best`` — ``/best``: the parameters of the best evaluation so far (and its V2
  statistics); falls back to ``last`` for a checkpoint written before any evaluation;
* ``last`` — the best member (highest fitness) of the latest iteration.

``task`` overrides the run's task with a compatible one (same model shapes, e.g.
another version of the env) and ``seed`` the run seed (RL evaluation seeds derive
from it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hpcars.algorithm.branches import BatchedModel
from hpcars.algorithm.models import Normalized
from hpcars.config import TrainConfig
from hpcars.errors import CheckpointError, ConfigError
from hpcars.population.truncation import rank
from hpcars.run import checkpoint
from hpcars.run.checkpoint import Checkpoint
from hpcars.run.initial import initial_model
from hpcars.tasks import make_task
from hpcars.tasks.base import Task

WHICH = ("best", "last")


@dataclass(frozen=True)
class LoadedPolicy:
    cfg: TrainConfig
    task: Task
    model: BatchedModel
    flat: torch.Tensor  # the parameters, flat, in the model's order
    iteration: int  # the iteration these parameters are from
    which: str  # best or last (what was actually loaded)
    score: float | None  # the evaluation score they had in training (best), if known
    checkpoint: Path


def read_checkpoint(target: Path) -> tuple[Path, Checkpoint]:
    path = checkpoint.locate(target)
    if path is None:
        raise CheckpointError(f"{target}: no checkpoint here (is it a run directory or a checkpoint file?)")
    return path, checkpoint.read(path, tables=False)  # parameters only: a copied-out file reads too


def config_of(
    saved: Checkpoint, task: str | None = None, seed: int | None = None, env_backend: str | None = None
) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.config.items() if k in known}
    values.update(device="cpu", init_from="", init_partial=False, resume="", run_dir="", replay="")
    if task:
        values["task"] = task
    if seed is not None:
        values["seed"] = seed
    if env_backend is not None:
        values["env_backend"] = env_backend
    return TrainConfig(**values)


def load_policy(
    target: Path,
    which: str = "best",
    task: str | None = None,
    seed: int | None = None,
    env_backend: str | None = None,
) -> LoadedPolicy:
    """The policy of a run or checkpoint; ``CheckpointError`` / ``ConfigError`` (one line) otherwise."""
    path, saved = read_checkpoint(Path(target))
    cfg = config_of(saved, task, seed, env_backend)
    built = make_task(cfg)
    module, _ = initial_model(built, cfg.variant, None)
    model = BatchedModel(module, torch.device("cpu"))
    if which == "best" and saved.best is None:
        which = "last"  # nothing evaluated yet
    if which == "best":
        assert saved.best is not None  # "last" without an evaluation (just above)
        params, stat, iteration, score = saved.best.params, saved.best.obs_stat, saved.best.iteration, saved.best.score
    else:
        member = int(rank(np.array([m.fitness for m in saved.members]))[0])
        params, stat, iteration, score = saved.members[member].params, saved.obs_stat, saved.iteration, None
    if list(params) != list(model.spec.names):
        raise ConfigError(
            "--task", f"{cfg.task}'s model {list(model.spec.names)} does not fit {list(params)} of {path}"
        )
    flat = torch.cat([torch.as_tensor(np.asarray(params[n]), dtype=torch.float32).reshape(-1) for n in params])
    if flat.numel() != model.spec.size:
        raise ConfigError("--task", f"{cfg.task}'s model has {model.spec.size} parameters, {path} holds {flat.numel()}")
    if saved.buffers:
        model.module.load_state_dict({n: torch.as_tensor(v) for n, v in saved.buffers.items()}, strict=False)
    if isinstance(model.module, Normalized) and stat is not None:
        mean, inv_std = stat.normaliser()
        model.module.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        model.module.inv_std.copy_(torch.as_tensor(inv_std, dtype=torch.float32))
    return LoadedPolicy(cfg, built, model, flat, iteration, which, score, path)
