"""``python -m hpcars.export RUN_DIR --format npz|torchscript|onnx``: the policy as one portable file.

    python -m hpcars.export runs/HalfCheetah-v5-seed0-001                  # -> RUN_DIR/export/policy-best.npz
    python -m hpcars.export RUN --format torchscript --which last --out policy.pt
    python -m hpcars.export saved/cheetah.h5                              # -> saved/export/cheetah-policy-best.npz

Without ``--out`` the file goes (``default_out``), for a run directory, to
``RUN_DIR/export/policy-WHICH.EXT``; for one of its checkpoint files
(``RUN_DIR/checkpoints/ckpt-N.h5``), to ``RUN_DIR/export/ckpt-N-policy-WHICH.EXT``; for
any other checkpoint file ``FOLDER/NAME.h5``, beside it: ``FOLDER/export/NAME-policy-WHICH.EXT``.

Each file holds everything needed to act: the parameters, the V2 normaliser (mean
and 1/std; identity for V1), the action mapping (clip to the Box bounds, or argmax
for a Discrete space) and the observation/action spaces, plus where it came from.

* ``npz`` — NumPy arrays, for linear and MLP models (``nn.Linear`` layers with tanh,
  ReLU or identity between them): ``layers``, ``W0``, ``b0``, ``W1``, … (``b`` is 0 for a
  layer without bias), ``activations``, ``mean``, ``inv_std``, ``discrete``, ``low``,
  ``high``, ``obs_shape``, ``action_shape``, ``meta`` (JSON). ``docs/load_policy.py`` is a
  complete loader in fifteen lines of NumPy.
* ``torchscript`` — a traced ``torch.jit`` module ``obs [B, d] -> actions``: any model;
  load with ``torch.jit.load``.
* ``onnx`` — the same module as ONNX (needs the ``onnx`` package; a clear message
  otherwise), for runtimes without torch.

Supervised models export the same way (no action mapping: the outputs as they are).
Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.models import Normalized
from hpcars.errors import CheckpointError, ConfigError, PathProblem
from hpcars.run import checkpoint
from hpcars.run.paths import writable_directory
from hpcars.run.policy import WHICH, LoadedPolicy, load_policy
from hpcars.threads import pin_threads

FORMATS = ("npz", "torchscript", "onnx")
SUFFIX = {"npz": ".npz", "torchscript": ".pt", "onnx": ".onnx"}
ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Identity: "identity"}


class ExportedPolicy(nn.Module):
    """obs [B, d] -> actions [B, k] (Box: clipped) or [B] (Discrete: argmax); supervised: the outputs."""

    if TYPE_CHECKING:  # the buffers' types for mypy; no class annotations at run time (they trip torch.jit)
        low: torch.Tensor
        high: torch.Tensor

    def __init__(self, policy: LoadedPolicy) -> None:
        super().__init__()
        module = policy.model.module
        policy.model.spec.load(module, policy.flat)
        self.model = module.eval()
        task: Any = policy.task  # an RL task's action bounds (low, high) are not part of the Task protocol
        self.discrete = bool(getattr(task, "discrete", False))
        bounds = getattr(task, "low", None) is not None
        self.clip = bounds and not self.discrete and getattr(task, "clip_actions", True)
        self.register_buffer("low", task.low.clone() if bounds else torch.zeros(0))
        self.register_buffer("high", task.high.clone() if bounds else torch.zeros(0))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.model(obs)
        if self.discrete:
            return out.argmax(dim=-1)
        if self.clip:
            return torch.maximum(torch.minimum(out, self.high), self.low)
        return out


def layers_of(module: nn.Module) -> tuple[list[tuple[nn.Linear, str]], torch.Tensor | None, torch.Tensor | None]:
    """(linear layers with the activation after each, V2 mean, V2 1/std) of a linear/MLP model."""
    mean = inv_std = None
    if isinstance(module, Normalized):
        mean, inv_std, module = module.mean, module.inv_std, module.inner
    parts = list(module) if isinstance(module, nn.Sequential) else [module]
    layers: list[tuple[nn.Linear, str]] = []
    for part in parts:
        if isinstance(part, nn.Linear):
            layers.append((part, "identity"))
        elif type(part) in ACTIVATIONS and layers and layers[-1][1] == "identity":
            layers[-1] = (layers[-1][0], ACTIVATIONS[type(part)])
        else:
            raise ConfigError(
                "--format",
                f"npz holds Linear layers with tanh/relu between them; this model has "
                f"{type(part).__name__}: use --format torchscript",
            )
    return layers, mean, inv_std


def export_npz(policy: LoadedPolicy, path: Path) -> None:
    exported = ExportedPolicy(policy)
    layers, mean, inv_std = layers_of(exported.model)
    first = layers[0][0].in_features
    arrays: dict[str, Any] = {
        "layers": np.int64(len(layers)),
        "activations": np.array([act for _, act in layers]),
        "mean": np.zeros(first, np.float32) if mean is None else mean.detach().numpy().astype(np.float32),
        "inv_std": np.ones(first, np.float32) if inv_std is None else inv_std.detach().numpy().astype(np.float32),
        "discrete": np.bool_(exported.discrete),
        "low": exported.low.numpy() if exported.clip else np.zeros(0, np.float32),  # empty: not clipped
        "high": exported.high.numpy() if exported.clip else np.zeros(0, np.float32),
        "obs_shape": np.array([first], np.int64),
        "action_shape": np.array([layers[-1][0].out_features], np.int64),
        "meta": np.array(json.dumps(meta(policy))),
    }
    with torch.no_grad():
        for i, (layer, _) in enumerate(layers):
            arrays[f"W{i}"] = layer.weight.detach().numpy().astype(np.float32)
            bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_features)
            arrays[f"b{i}"] = bias.detach().numpy().astype(np.float32)
    np.savez(path, **arrays)


def meta(policy: LoadedPolicy) -> dict:
    return {
        "task": policy.cfg.task,
        "variant": policy.cfg.variant,
        "which": policy.which,
        "iteration": policy.iteration,
        "score": policy.score,
        "checkpoint": str(policy.checkpoint),
    }


def export_module(policy: LoadedPolicy, path: Path, kind: str) -> None:
    exported = ExportedPolicy(policy)
    example = torch.zeros(1, first_input_width(exported.model))
    if kind == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still works
            traced = torch.jit.trace(exported, example)
        traced.save(str(path), _extra_files={"meta.json": json.dumps(meta(policy))})
        return
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise ConfigError(
            "--format", "onnx needs the onnx package: pip install onnx (npz and torchscript need nothing more)"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter: no onnxscript needed
        torch.onnx.export(
            exported,
            (example,),
            str(path),
            input_names=["obs"],
            output_names=["action"],
            dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
            dynamo=False,
        )


def first_input_width(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
    raise ConfigError("--format", "cannot tell the model's input width (no Linear layer); export it yourself")


def default_out(target: Path, which: str, fmt: str) -> Path:
    """Where the export goes without ``--out`` (see the module's docstring): a run's own ``export``
    folder, or an ``export`` folder beside a checkpoint file that lies outside a run directory."""
    name = f"policy-{which}{SUFFIX[fmt]}"
    if not target.is_file():
        return target / "export" / name
    folder = target.parent
    in_run = folder.name == checkpoint.DIRECTORY
    return (folder.parent if in_run else folder) / "export" / f"{target.stem}-{name}"


def main(argv: Sequence[str] | None = None) -> int:
    pin_threads()
    parser = argparse.ArgumentParser(
        prog="python -m hpcars.export",
        description="Write a trained policy as one portable file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("target", type=Path, help="a run directory or a checkpoint file")
    parser.add_argument("--format", choices=FORMATS, default="npz", help="file format")
    parser.add_argument("--which", choices=WHICH, default="best", help="the best evaluated parameters, or the last")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (default: RUN_DIR/export/policy-WHICH.EXT; for a checkpoint file outside a run "
        "directory, FOLDER/export/NAME-policy-WHICH.EXT beside it)",
    )
    args = parser.parse_args(argv)
    try:
        policy = load_policy(args.target, args.which)
        out = args.out or default_out(args.target, policy.which, args.format)
        try:
            writable_directory(out.parent)
        except PathProblem as err:
            raise ConfigError("--out", str(err)) from None
        if args.format == "npz":
            export_npz(policy, out)
        else:
            export_module(policy, out, args.format)
    except (ConfigError, CheckpointError) as err:
        print(f"hpcars.export: error: {err}", file=sys.stderr)
        return 2
    print(f"exported the {policy.which} policy (iteration {policy.iteration}) of {policy.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
