"""Where a ``--restart`` setting fires, read from runs made without it, and the arm it makes.

    python -m hpcars.analysis.restarts BASE_SWEEP --patience 8 16 --min-gain 10
    python -m hpcars.analysis.restarts BASE_SWEEP --patience 8 --min-gain 10 --compose RERUN_SWEEP --out ARM_DIR

A run with ``--restart`` is the run without it, bit for bit, until its first restart: the stall
watch only reads the evaluations (``hpcars.population.restart.observe``), and nothing else in
the run depends on it. So where a setting first fires is a pure function of the evaluations the
run without restarts recorded, and on a seed where it never fires the run with it *is* the run
without it. Tuning a restart setting then costs only the seeds where it fires:

1. run the arm without restarts (``jobs/examples/restart-tune-*.toml``);
2. this tool without ``--compose``: per setting, the seeds where it fires, the iteration, the
   best evaluation so far, what the run without it did after (reached the threshold at some
   episode count, or not), and the seeds to rerun; ``--spec DIR`` writes a sweep spec per
   setting, the base sweep's options and the setting on those seeds;
3. run those specs (or a grid of settings on the union of their seeds);
4. ``--compose`` with one setting: the arm on every seed, the setting's reruns where there are
   any and the base runs elsewhere (their ``summary.json`` and ``config.json`` copied, the
   config given the setting and ``"same_run_as"``), after checking that each rerun restarted
   where predicted with evaluations equal to the base run's up to there, that a rerun the
   setting never restarts ends on the base run's bits, and that the setting fires on no seed
   without a rerun. ``population_study`` reads ``ARM_DIR`` as any sweep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpcars.population.restart import RestartParams, Watch, observe

from .load import read_run, run_dirs


@dataclass(frozen=True)
class Evaluations:
    """One finished run: its evaluations in order, (iteration, score) with θ₀'s first, and its
    ``config.json`` and ``summary.json``."""

    run_dir: Path
    points: tuple[tuple[int, float], ...]
    config: dict
    summary: dict

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


def first_restart(params: RestartParams, points: tuple[tuple[int, float], ...]) -> int | None:
    """The iteration of the first restart under ``params``, or None. As the run decides: θ₀'s
    evaluation and the run's last one are watched but never restart it."""
    watch = Watch()
    for k, (iteration, score) in enumerate(points):
        watch, stalled = observe(params, watch, iteration, score)
        if stalled and 0 < k < len(points) - 1:
            return iteration
    return None


def read_runs(root: Path) -> list[Evaluations]:
    """Every finished run under ``root`` (a ``summary.json``)."""
    out = []
    for run_dir in run_dirs(root):
        if not (run_dir / "summary.json").exists():
            continue
        read = read_run(run_dir)
        if read is None:
            continue
        _, table, _ = read
        config = json.loads((run_dir / "config.json").read_text())  # with its provenance, which the checkpoint's lacks
        summary = json.loads((run_dir / "summary.json").read_text())
        scored = table[np.isfinite(table["score"])]
        points = ((0, float(summary["initial"]["score"])),) + tuple(
            (int(i), float(s)) for i, s in zip(scored["iteration"], scored["score"], strict=True)
        )
        out.append(Evaluations(run_dir, points, config, summary))
    return out


def read_evaluations(root: Path) -> dict[int, Evaluations]:
    """The runs of a sweep without restarts, by seed (one run per seed)."""
    runs = read_runs(root)
    by_seed = {run.seed: run for run in runs}
    if len(by_seed) != len(runs):
        raise ValueError(f"{root}: more than one run of a seed; the base is one setting without --restart")
    return by_seed


def _after(run: Evaluations) -> str:
    reached, best = run.summary.get("reached_target"), max(score for _, score in run.points)
    return f"reached at {reached['episodes']:,} episodes" if reached else f"missed (best {best:.4g})"


def _value(text: str) -> str:
    """One option's value as TOML (an integer, a number or a string)."""
    for kind in (int, float):
        try:
            return repr(kind(text))
        except ValueError:
            pass
    return json.dumps(text)


def write_spec(root: Path, params: RestartParams, seeds: list[int], out: Path) -> Path:
    """A sweep spec of ``params`` on ``seeds`` with the base sweep's options (its ``sweep.json``)
    and, where its spec file is still there, that spec's ``[resources]``."""
    sweep = json.loads((root / "sweep.json").read_text())
    argv = sweep["argv"]
    options = {tuple(a[:-2]) for a in argv.values() if a[-2] == "--seed"}
    if len(options) != 1:
        raise ValueError(f"{root}: its runs differ in more than the seed; name a sweep of one setting")
    pairs = list(options.pop())
    setting = {"restart": json.dumps(params.mode), "restart-patience": str(params.patience)}
    setting |= {"restart-min-gain": repr(params.min_gain), "restarts": str(params.limit)}
    given = {k[2:]: _value(v) for k, v in zip(pairs[::2], pairs[1::2], strict=True)}
    base = [f"{k} = {v}" for k, v in (given | setting).items()]  # the setting replaces the base's own
    name = f"{root.name}-restart-p{params.patience}-g{params.min_gain:g}"
    spec_file = Path(sweep.get("spec", ""))
    resources = tomllib.loads(spec_file.read_text()).get("resources", {}) if spec_file.is_file() else {}
    text = f"# python -m hpcars.analysis.restarts {root} --spec {out}: the setting on the seeds where it fires\n"
    text += f"name = {json.dumps(name)}\nseeds = {seeds}\n\n[base]\n" + "\n".join(base) + "\n"
    if resources:
        text += "\n[resources]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in resources.items())
    path = out / f"{name}.toml"
    path.write_text(text)
    return path


def report(
    base: dict[int, Evaluations],
    patience: list[int],
    min_gain: list[float],
    mode: str,
    limit: int,
    spec: Path | None,
    root: Path,
) -> str:
    lines = []
    for p, g in itertools.product(patience, min_gain):
        params = RestartParams(mode, p, g, limit)
        fired = {s: at for s, run in sorted(base.items()) if (at := first_restart(params, run.points)) is not None}
        lines.append(f"--restart-patience {p} --restart-min-gain {g:g}: fires on {len(fired)} of {len(base)} seeds")
        for s, at in fired.items():
            top = max(score for i, score in base[s].points if i <= at)
            lines.append(f"  seed {s}: at iteration {at} (best so far {top:.4g}); without it: {_after(base[s])}")
        lines.append(f"  seeds = {list(fired)}")
        if spec is not None and fired:
            lines.append(f"  spec: {write_spec(root, params, list(fired), spec)}")
    return "\n".join(lines)


def _params(config: dict) -> RestartParams:
    return RestartParams(config["restart"], config["restart_patience"], config["restart_min_gain"], config["restarts"])


def _check(s: int, at: int | None, base: Evaluations, rerun: Evaluations) -> None:
    """A rerun is the base run where the setting never fires, and the base run up to the
    restart where it does; raise ValueError if not."""
    done = (rerun.summary.get("restarts") or {}).get("iterations") or []
    if at is None:
        if done or rerun.summary["params_sha256"] != base.summary["params_sha256"]:
            raise ValueError(f"seed {s}: the setting never fires, but the rerun (restarts at {done}) is another run")
        return
    if not done or done[0] != at:
        raise ValueError(f"seed {s}: predicted the first restart at {at}, the rerun restarted at {done[:1]}")
    if tuple(p for p in base.points if p[0] <= at) != tuple(p for p in rerun.points if p[0] <= at):
        raise ValueError(f"seed {s}: the rerun's evaluations up to iteration {at} differ from the base run's")


def compose(base: dict[int, Evaluations], reruns: list[Evaluations], patience: int, min_gain: float, out: Path) -> str:
    """Write the arm of the setting (``patience``, ``min_gain``) to ``out`` (the module's step
    4) from the reruns of that setting among ``reruns``; raise ValueError where a check fails."""
    setting_of = {r.seed: _params(r.config) for r in reruns}
    mine = {
        r.seed: r for r in reruns if (setting_of[r.seed].patience, setting_of[r.seed].min_gain) == (patience, min_gain)
    }
    settings = {setting_of[s] for s in mine}
    if len(settings) != 1 or not next(iter(settings)).enabled:
        raise ValueError(
            f"the reruns of --restart-patience {patience} --restart-min-gain {min_gain:g}: "
            f"{len(settings)} settings with --restart, need exactly 1"
        )
    params = settings.pop()
    lines = []
    for s, run in sorted(base.items()):
        at, target = first_restart(params, run.points), out / "runs" / f"seed={s}"
        if s not in mine and at is not None:
            raise ValueError(f"seed {s}: the setting fires at iteration {at}; rerun it")
        target.mkdir(parents=True, exist_ok=True)
        if s in mine:
            _check(s, at, run, mine[s])
            for name in ("config.json", "summary.json", "history.h5"):
                shutil.copy2(mine[s].run_dir / name, target / name)
            lines.append(f"seed {s}: " + (f"restarts at {at}" if at is not None else "never restarts, rerun"))
            continue
        setting = {"restart": params.mode, "restart_patience": params.patience, "restart_min_gain": params.min_gain}
        config = {**run.config, **setting, "restarts": params.limit, "same_run_as": str(run.run_dir)}
        (target / "config.json").write_text(json.dumps(config, indent=1))
        shutil.copy2(run.run_dir / "summary.json", target / "summary.json")
        lines.append(f"seed {s}: never restarts, the run without it")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="a sweep directory of runs without --restart")
    parser.add_argument("--patience", type=int, nargs="+", default=[100], help="settings to read (default: 100)")
    parser.add_argument("--min-gain", type=float, nargs="+", default=[0.0], help="settings to read (default: 0)")
    parser.add_argument("--restart", choices=["fresh", "best"], default="fresh", help="for --spec (default: fresh)")
    parser.add_argument("--restarts", type=int, default=1, help="for --spec (default: 1)")
    parser.add_argument("--spec", help="write a sweep spec per setting on the seeds it fires on here (default: none)")
    parser.add_argument(
        "--compose",
        metavar="RERUN",
        help="a sweep of the setting (one --patience, one --min-gain) on the seeds it fires on",
    )
    parser.add_argument("--out", help="with --compose: the arm's directory (default: none; required then)")
    args = parser.parse_args(argv)
    if (
        args.restarts < 1
        or any(p < 1 for p in args.patience)
        or not all(math.isfinite(g) and g >= 0 for g in args.min_gain)
    ):
        parser.error("--patience, --restarts: integers >= 1; --min-gain: finite numbers >= 0")
    try:
        base = read_evaluations(Path(args.base))
    except ValueError as err:
        parser.error(f"base: {err}")
    if not base:
        parser.error(f"base: no finished run under {args.base}")
    if args.compose is None:
        spec = None if args.spec is None else Path(args.spec)
        if spec is not None:
            spec.mkdir(parents=True, exist_ok=True)
        try:
            print(report(base, args.patience, args.min_gain, args.restart, args.restarts, spec, Path(args.base)))
        except ValueError as err:
            print(f"restarts: {err}", file=sys.stderr)
            return 2
        return 0
    if not args.out or len(args.patience) != 1 or len(args.min_gain) != 1:
        parser.error("--compose needs --out, one --patience and one --min-gain")
    reruns = [run for root in args.compose.split(",") for run in read_runs(Path(root))]
    try:
        print(compose(base, reruns, args.patience[0], args.min_gain[0], Path(args.out)))
    except ValueError as err:
        print(f"restarts: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
