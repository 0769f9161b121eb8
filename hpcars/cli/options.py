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

import numpy as np

from hpcars.config import PRESET_DIR, PRESETS, RUN_CONTROL_FIELDS, TrainConfig, option_name, validate
from hpcars.errors import ConfigError, PathProblem
from hpcars.run.paths import read_text


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


def build_parser(prog: str = "python -m hpcars.train", given_only: bool = False) -> argparse.ArgumentParser:
    """The command line: every option with its default in ``--help``; ``given_only``: a parser whose
    namespace holds only the options given (typed), for ``resolve`` to layer over the rest. The
    allowed values are ``validate``'s to check, so a bad one reads the same from ``hpcars.fit``."""
    parser = OneLineParser(
        prog=prog,
        description="Train a model with Augmented Random Search on every MPI rank (mpirun -n K %(prog)s ...).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    missing: Any = argparse.SUPPRESS
    parser.add_argument(
        "--config",
        default=missing if given_only else "",
        help="TOML file with option values; the command line overrides it",
    )
    for f in dataclasses.fields(TrainConfig):
        kind = type(f.default)
        flag: dict[str, Any] = {"nargs": "?", "const": True} if kind is bool else {}  # --quiet alone means --quiet true
        choices = f.metadata.get("choices")
        parser.add_argument(
            option_name(f.name),
            dest=f.name,
            type=_converter(kind),
            default=missing if given_only else f.default,
            help=f.metadata["help"] + (f" (one of: {', '.join(choices)})" if choices else ""),
            metavar=f.name.upper(),
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
        try:
            values[name] = typed(name, value, type(known[name].default))
        except ConfigError as err:
            raise ConfigError(err.option, f"{path}: {err.message}") from None
    return values


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """The command line's configuration: its options through ``resolve``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    build_parser().parse_args(argv)  # --help, and one-line usage errors
    return resolve(vars(build_parser(given_only=True).parse_args(argv)))


def resolve(given: dict[str, Any]) -> TrainConfig:
    """The configuration from the option values ``given`` (the command line's, or ``hpcars.fit``'s
    keywords; ``config``: a TOML file's path), layered over the rest: defaults < ``--preset`` <
    the options of the run being resumed (``--resume``) or replayed (``--replay``) < the
    ``--config`` file < ``given``; then ``validate``. The command line and ``hpcars.fit`` both
    come here: the same defaults, presets and errors."""
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    given = dict(given)
    config = given.pop("config", "")
    for name, value in given.items():
        if name not in known:
            raise ConfigError(name, f"unknown option; allowed: {', '.join(sorted(known))}")
        given[name] = typed(name, value, type(known[name].default))
    from_file = load_file(config) if config else {}
    values: dict[str, Any] = {name: f.default for name, f in known.items()}
    preset = given.get("preset") or from_file.get("preset", "")
    if preset and preset not in PRESETS:
        raise ConfigError("--preset", f"must be one of {', '.join(PRESETS)} (got {preset!r})")
    if preset:
        values.update(load_file(str(PRESET_DIR / f"{preset}.toml")))
    resume = given.get("resume") or from_file.get("resume", "") or given.get("replay", "")
    if resume:  # options not given again come from the run being resumed (or replayed)
        values.update(saved_config(Path(resume), "--replay" if given.get("replay") else "--resume"))
    values.update(from_file)
    values.update(given)
    return validate(TrainConfig(**values))


def typed(name: str, value: Any, kind: type) -> Any:
    """``value`` as an option of type ``kind`` (an int for a float is fine; a bool is no number);
    ``ConfigError`` naming the option otherwise."""
    if kind is float and isinstance(value, (int, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    if kind is int and isinstance(value, np.integer):
        return int(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(option_name(name), f"expected {kind.__name__}, got {value!r}")
    return value


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
