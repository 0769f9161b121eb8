"""``python -m hpcars.inspect RUN_DIR_OR_PARAMS_H5 [--json]``: what a run produced.

Prints the config, iteration, world size, ``params_sha256`` (recomputed from the
stored parameters and checked against the recorded one) and the last metrics row.
``--json`` prints the same as one JSON object for scripts. A missing, foreign or
unreadable file is a one-line error with exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np

from hpcars.output import FORMAT, FORMAT_VERSION, METRICS_FILE, PARAMS_FILE


class InspectError(Exception):
    pass


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def last_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return {}
    last: dict[str, str] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            last = row
    return {k: _number(v) for k, v in last.items() if v != ""}


def read_run(target: Path) -> dict[str, Any]:
    """The summary of a run directory (or of a ``params.h5`` file)."""
    params_file = target / PARAMS_FILE if target.is_dir() else target
    run_dir = params_file.parent
    if not params_file.exists():
        raise InspectError(f"{params_file}: no such file (is {target} a run directory with a finished run?)")
    try:
        with h5py.File(params_file, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InspectError(f"{params_file}: not an hpcars parameter file")
            version = int(f.attrs["format_version"])
            if version > FORMAT_VERSION:
                raise InspectError(f"{params_file}: format version {version} is newer than this hpcars ({FORMAT_VERSION})")
            names = json.loads(f.attrs["param_names"])
            flat = np.concatenate([np.asarray(f["params"][n], dtype="<f4").reshape(-1) for n in names])
            info = {
                "iteration": int(f.attrs["iteration"]),
                "world_size": int(f.attrs["world_size"]),
                "params_sha256": hashlib.sha256(flat.tobytes()).hexdigest(),
                "recorded_sha256": str(f.attrs["params_sha256"]),
                "parameters": int(flat.size),
                "config": json.loads(f.attrs["config"]),
            }
    except (OSError, KeyError, ValueError) as err:
        raise InspectError(f"{params_file}: unreadable ({err})")
    info["sha256_ok"] = info["params_sha256"] == info.pop("recorded_sha256")
    info["metrics"] = last_metrics(run_dir)
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcars.inspect", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a run directory or its params.h5")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        info = read_run(Path(args.target))
    except InspectError as err:
        print(f"hpcars.inspect: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
        return 0
    cfg = info["config"]
    print(f"run: task {cfg['task']}  seed {cfg['seed']}  variant {cfg['variant']}  N={cfg['directions']}")
    print(f"iteration {info['iteration']}  world size {info['world_size']}  {info['parameters']} parameters")
    print(f"params_sha256 {info['params_sha256']}  ({'matches' if info['sha256_ok'] else 'DOES NOT MATCH'} the record)")
    for key, value in info["metrics"].items():
        print(f"  {key:14s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
