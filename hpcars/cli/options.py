"""The command line of ``hpcars.train``: options from ``TrainConfig``, TOML files, presets, resume.

Every field of ``TrainConfig`` is an option (``step_size`` -> ``--step-size``) whose
``--help`` line shows its default. Layering: defaults < ``--preset`` < the options of
the run being resumed (``--resume``) or replayed (``--replay``) < the ``--config``
TOML file < the command line; then ``config.validate``. Errors are ``ConfigError``:
one line naming the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcars.config import PRESET_DIR, PRESETS, RUN_CONTROL_FIELDS, ConfigError, TrainConfig, option_name, validate
from hpcars.run.paths import PathProblem, read_text


def _converter(kind: type) -> Any:
    """An argparse converter whose error names the expected kind."""
    words = {int: "an integer", float: "a number", bool: "true or false"}

    def convert(text: str) -> Any:
        if kind is str:
            return text
        if kind is bool:
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words[kind]}, got {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (option and problem) and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("argument ", "")
        option, _, detail = message.partition(": ")
        if option.startswith("-") and detail:
            raise ConfigError(option.split("/")[-1], detail)
        raise ConfigError("usage", message)


def build_parser(prog: str = "python -m hpcars.train") -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=prog,
        description="Train a model with Augmented Random Search on every MPI rank (mpirun -n K %(prog)s ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", default="", help="TOML file with option values; the command line overrides it")
    for f in dataclasses.fields(TrainConfig):
        kind = type(f.default)
        flag: dict[str, Any] = {"nargs": "?", "const": True} if kind is bool else {}  # --quiet alone means --quiet true
        parser.add_argument(
            option_name(f.name),
            dest=f.name,
            type=_converter(kind),
            default=f.default,
            choices=f.metadata.get("choices"),
            help=f.metadata["help"],
            **flag,
        )
    return parser


def load_file(path: str) -> dict[str, Any]:
    """Field values from a TOML file, with names checked and types coerced."""
    try:
        raw = tomllib.loads(read_text(Path(path)))
    except PathProblem as err:
        raise ConfigError("--config", str(err)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", f"{path} is not valid TOML: {err}") from None
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError("--config", f"{path}: unknown option {key!r}; allowed: {', '.join(sorted(known))}")
        kind = type(known[name].default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ConfigError(option_name(name), f"{path}: expected {kind.__name__}, got {value!r}")
        values[name] = value
    return values


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Preset, then config file, then command line, then validation."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from_file = load_file(args.config) if args.config else {}
    preset = args.preset or from_file.get("preset", "")
    if preset and preset not in PRESETS:
        raise ConfigError("--preset", f"must be one of {', '.join(PRESETS)} (got {preset!r})")
    if preset:
        parser.set_defaults(**load_file(str(PRESET_DIR / f"{preset}.toml")))
    resume = args.resume or from_file.get("resume", "") or args.replay
    if resume:  # options not given again come from the run being resumed (or replayed)
        parser.set_defaults(**saved_config(Path(resume), "--replay" if args.replay else "--resume"))
    parser.set_defaults(**from_file)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    return validate(TrainConfig(**values))


def saved_config(run_dir: Path, option: str = "--resume") -> dict[str, Any]:
    """The options recorded in a run directory's latest checkpoint, or in a checkpoint file (empty if none)."""
    from hpcars.run import checkpoint

    try:
        found = checkpoint.locate(run_dir)  # a run directory's latest, or a checkpoint file
    except OSError as err:
        raise ConfigError(option, f"cannot read {run_dir}: {err.strerror}") from None
    if found is None:
        return {}
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = checkpoint.read_config(found)
    return {k: v for k, v in saved.items() if k in known and k not in RUN_CONTROL_FIELDS}
