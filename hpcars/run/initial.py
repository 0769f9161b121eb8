"""The model a run starts from: the task's model, optionally loaded with given weights.

``--init-from PATH`` (ARS post-training of a gradient-trained model) accepts

* a torch ``state_dict`` file — ``torch.save(model.state_dict(), PATH)`` — read with
  ``weights_only=True`` (no code is unpickled);
* an hpcars checkpoint (``ckpt-*.h5``): the parameters of its best member (highest
  fitness), its model buffers, and — when both runs are V2 — its observation
  statistics, which then continue to accumulate;
* an hpcars run directory: its latest checkpoint.

Names are the task model's own (``model.state_dict()`` keys); the ``inner.`` prefix
of hpcars' V2 wrapper is removed from a checkpoint's names, so V1 and V2 runs and
plain state dicts load into each other. The file must fit the model exactly: every
parameter present with its shape, nothing the model lacks. Otherwise the run is
refused, naming the first offending entries — unless ``--init-partial``, which
loads every entry whose name and shape match, keeps the task's own
initialisation for the rest, and prints how many of each. Model buffers the file
lacks keep their values. The file's SHA-256 and the hash of θ₀ are recorded in
the checkpoint and ``summary.json``; a resume does not read the file again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.models import Normalized
from hpcars.algorithm.runningstat import RunningStat
from hpcars.errors import CheckpointError, ConfigError
from hpcars.population.truncation import rank
from hpcars.run import checkpoint
from hpcars.tasks.base import Task

V2_PREFIX = "inner."


@dataclass(frozen=True)
class InitialWeights:
    """Weights read from ``--init-from``: name -> tensor, and where they came from."""

    path: str
    file_sha256: str
    values: dict[str, torch.Tensor]
    obs_stat: RunningStat | None = None
    partial: bool = False

    @classmethod
    def read(cls, path: str, partial: bool = False) -> InitialWeights:
        """``ConfigError`` (for ``--init-from``) for anything that cannot be read."""
        source = Path(path)
        try:
            if source.is_dir():
                found = checkpoint.locate(source)
                if found is None:
                    raise ConfigError("--init-from", f"{path} holds no hpcars checkpoint")
                source = found
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
        except OSError as err:
            raise ConfigError("--init-from", f"cannot read {path}: {err.strerror}") from None
        if source.suffix == ".h5":
            values, obs_stat = _from_checkpoint(source)
            return cls(str(source), digest, values, obs_stat, partial)
        try:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for a file that is not a state_dict
            raise ConfigError("--init-from", f"{source}: not a torch state_dict file ({type(err).__name__})") from None
        if not (isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values())):
            raise ConfigError(
                "--init-from", f"{source}: expected a state_dict (name -> tensor), got {type(loaded).__name__}"
            )
        return cls(str(source), digest, {str(k): v for k, v in loaded.items()}, None, partial)

    def apply(self, module: nn.Module) -> InitReport:
        """Load into ``module`` (the task's model, before any V2 wrapping)."""
        target = module.state_dict()
        parameters = {name for name, _ in module.named_parameters()}
        problems, usable = [], {}
        for name, value in self.values.items():
            if name not in target:
                problems.append(f"{name} is not in the model")
            elif tuple(value.shape) != tuple(target[name].shape):
                problems.append(
                    f"{name} has shape {tuple(value.shape)} in the file, {tuple(target[name].shape)} in the model"
                )
            else:
                usable[name] = value.to(target[name].dtype)
        problems += [f"{name} is missing from the file" for name in sorted(parameters - set(self.values))]
        if problems and not self.partial:
            shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            raise ConfigError(
                "--init-from", f"{self.path} does not fit the task's model: {shown}; --init-partial loads what fits"
            )
        module.load_state_dict(usable, strict=False)
        loaded = sorted(set(usable) & parameters)
        return InitReport(self.path, self.file_sha256, loaded, sorted(parameters - set(loaded)))


@dataclass(frozen=True)
class InitReport:
    """What ``--init-from`` loaded: for the first line of output and the run's records."""

    path: str
    file_sha256: str
    loaded: list[str]
    kept: list[str] = field(default_factory=list)  # parameters left at the task's initialisation

    def line(self) -> str:
        kept = f", {len(self.kept)} kept from the task ({', '.join(self.kept[:3])})" if self.kept else ""
        return f"init from {self.path} (sha256 {self.file_sha256[:12]}): {len(self.loaded)} parameters loaded{kept}"


def _from_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], RunningStat | None]:
    try:
        ckpt = checkpoint.read(path, tables=False)
    except CheckpointError as err:
        raise ConfigError("--init-from", str(err)) from None
    best = int(rank(np.array([m.fitness for m in ckpt.members]))[0])
    values = {**ckpt.buffers, **ckpt.members[best].params}
    return {_strip(name): torch.from_numpy(np.array(v)) for name, v in values.items()}, ckpt.obs_stat


def _strip(name: str) -> str:
    return name[len(V2_PREFIX) :] if name.startswith(V2_PREFIX) else name


def initial_model(task: Task, variant: str, initial: InitialWeights | None) -> tuple[nn.Module, InitReport | None]:
    """The task's model with ``initial`` loaded, wrapped for V2; in ``eval()`` mode."""
    model = task.build_model()
    report = initial.apply(model) if initial is not None else None
    if variant == "v2":
        model = Normalized(model, task.input_dim)
    return model.eval(), report
