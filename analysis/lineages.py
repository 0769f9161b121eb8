"""Where a population run stalls, lineage by lineage, and what truncation kept.

    python -m hpcars.analysis.lineages SWEEP_OR_RUN [SWEEP_OR_RUN ...] [--out DIR]

Reads every population run under the given directories (its ``history.h5`` members table,
``hpcars.population.members``; runs from before that table are counted and skipped, and a
run resumed into it from an older checkpoint is read from its first members row on) and
writes, per run, a row of ``lineages.md`` / ``lineages.csv`` and a panel of
``lineages.png``: each member's training return over the run's episodes, with the best
member's evaluations and the threshold on top.

Truncation ranks members on their training *fitness*: the mean reward of their 2N
perturbed episodes, which for RL has ``shift`` per step taken off (the ARS paper's
survival-bonus trick for Hopper, Walker and Ant). The threshold judges the *unshifted*
return, so a member that runs fast and falls can outrank one that runs slower for the
whole episode (`--rank-by return` ranks on the unshifted return: then both counts below are
0 by construction). For every generation the table counts:

* ``generations`` — truncations in the run;
* ``killed_top_unshifted`` — generations in which truncation replaced the member whose
  unshifted training return was the highest of all (the one the threshold favours);
* ``disagree`` — generations in which ranking on the unshifted return would have kept a
  different set of members;
* ``outcome`` — reached, missed, finished (a task without a target) or unfinished;
* ``best_eval`` and ``at_episodes`` — the best evaluation and when it came, and
  ``last_gain_episodes`` — the episodes from the last new best evaluation to the end of
  the run (a stall's length).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcars.population.truncation import rank


@dataclass(frozen=True)
class RunLineages:
    run: str  # SWEEP/RUN for a run of a sweep, else the run directory's name
    seed: int
    members: int
    outcome: str  # reached, missed (the target), finished (no target) or unfinished (no summary yet)
    best_eval: float
    at_episodes: int
    last_gain_episodes: int
    generations: int
    killed_top_unshifted: int
    disagree: int


def read_tables(run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """(members, metrics) columns of a run's history.h5; None without a members table."""
    path = run_dir / "history.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r", locking=False) as f:
        if "members" not in f:
            return None
        members = {k: np.asarray(v) for k, v in f["members"].items()}
        metrics = {k: np.asarray(v) for k, v in f["metrics"].items() if v.dtype.kind in "fiu"}
    return members, metrics


def unshifted(members: dict[str, np.ndarray], shift: float) -> np.ndarray:
    """Each member's mean training return with the survival bonus given back [rows, M]."""
    return members["reward_mean"] + shift * members["samples_mean"]


def generation_rows(members: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """(row, the members cloned at that row) for every truncation."""
    out = []
    for i, iteration in enumerate(members["iteration"]):
        cloned = np.flatnonzero((members["born"][i] == iteration) & (members["parent"][i] >= 0))
        if cloned.size:
            out.append((i, cloned))
    return out


def survivors_on(values: np.ndarray, killed: int) -> set[int]:
    """The members truncation would keep if it ranked on ``values`` (its own ``rank``)."""
    return set(rank(values)[: values.size - killed].tolist())


def summarize(
    run_dir: Path, config: dict, members: dict[str, np.ndarray], metrics: dict[str, np.ndarray]
) -> RunLineages:
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        outcome = "unfinished"
    elif json.loads(summary_path.read_text()).get("reached_target"):
        outcome = "reached"
    else:
        target = config.get("target")
        outcome = "missed" if target is not None and math.isfinite(float(target)) else "finished"
    returns = unshifted(members, float(config.get("shift", 0.0)))
    killed_top = disagree = 0
    generations = generation_rows(members)
    for i, cloned in generations:
        killed_top += int(np.isfinite(returns[i]).any() and np.nanargmax(returns[i]) in cloned)
        disagree += int(survivors_on(returns[i], cloned.size) != set(range(returns.shape[1])) - set(cloned.tolist()))
    score, episodes = metrics.get("score", np.array([])), metrics["total_episodes"]
    seen = np.isfinite(score)
    best, at, last_gain = math.nan, 0, 0
    if seen.any():
        running = np.fmax.accumulate(np.where(seen, score, -np.inf))
        first_best = int(np.argmax(running >= running[-1]))
        best, at = float(running[-1]), int(episodes[first_best])
        last_gain = int(episodes[-1] - episodes[first_best])
    return RunLineages(
        run=run_name(run_dir),
        seed=int(config["seed"]),
        members=int(returns.shape[1]),
        outcome=outcome,
        best_eval=best,
        at_episodes=at,
        last_gain_episodes=last_gain,
        generations=len(generations),
        killed_top_unshifted=killed_top,
        disagree=disagree,
    )


def run_name(run_dir: Path) -> str:
    """``SWEEP/RUN`` for a sweep's run (``SWEEP/runs/RUN``), so runs of two sweeps stay apart."""
    return f"{run_dir.parent.parent.name}/{run_dir.name}" if run_dir.parent.name == "runs" else run_dir.name


def member_episodes(members: dict[str, np.ndarray], metrics: dict[str, np.ndarray]) -> np.ndarray:
    """The training episodes at each members row, matched on the iteration: a run resumed from a
    checkpoint older than the members table has metrics rows the table lacks."""
    rows = np.searchsorted(metrics["iteration"], members["iteration"])
    return metrics["total_episodes"][np.minimum(rows, len(metrics["iteration"]) - 1)]


def panel(ax, row: RunLineages, members, metrics, shift: float, target: float) -> None:
    episodes, at = metrics["total_episodes"], member_episodes(members, metrics)
    returns = unshifted(members, shift)
    for m in range(returns.shape[1]):
        ax.plot(at, returns[:, m], lw=0.6, alpha=0.6)
    score = metrics.get("score", np.full(episodes.shape, np.nan))
    seen = np.isfinite(score)
    ax.plot(episodes[seen], score[seen], "k.-", lw=1, ms=2, label="best member's evaluation")
    for i, _ in generation_rows(members):
        ax.axvline(at[i], color="0.85", lw=0.5, zorder=0)
    if math.isfinite(target):
        ax.axhline(target, color="r", lw=0.8, ls="--")
    ax.set_title(f"{row.run}: {row.outcome}, best {row.best_eval:.0f}", fontsize=8)
    ax.tick_params(labelsize=6)


def markdown(table: pd.DataFrame) -> str:
    def cell(value) -> str:
        return f"{value:.0f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="sweep or run directories (every run with a history.h5 under them)")
    parser.add_argument("--out", default=".", help="where lineages.md, .csv and .png go (default: .)")
    args = parser.parse_args(argv)
    runs, skipped = [], []
    for root in map(Path, args.dirs):
        if not root.is_dir():
            parser.error(f"{root}: not a directory")
        for history in sorted(root.rglob("history.h5")):
            tables = read_tables(history.parent)
            (runs if tables else skipped).append((history.parent, tables))
    if not runs:
        parser.error("no population run with a members table under " + ", ".join(args.dirs))
    configs = [json.loads((run_dir / "config.json").read_text()) for run_dir, _ in runs]
    rows = [summarize(run_dir, config, *tables) for (run_dir, tables), config in zip(runs, configs, strict=True)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([asdict(r) for r in rows]).sort_values(["seed", "run"])
    table.to_csv(out / "lineages.csv", index=False)
    text = markdown(table)
    (out / "lineages.md").write_text(text)
    matplotlib.use("Agg")
    cols = min(4, len(rows))
    grid_rows = math.ceil(len(rows) / cols)
    # At least 6 x 3.6 inches, so one run's panel still has room for the axis labels.
    fig = Figure(figsize=(max(6.0, 3.2 * cols), max(3.6, 2.4 * grid_rows)), layout="constrained")
    axes = fig.subplots(grid_rows, cols, squeeze=False).ravel()
    for ax, row, config, (_, (members, metrics)) in zip(axes, rows, configs, runs, strict=False):
        panel(ax, row, members, metrics, float(config.get("shift", 0.0)), float(config.get("target", math.nan)))
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    fig.supxlabel("training episodes (all members)")
    fig.supylabel("return (unshifted): members, evaluations")
    fig.savefig(out / "lineages.png", dpi=110)
    print(text, end="")
    if skipped:
        print(f"skipped {len(skipped)} run(s) without a members table (written before it existed)")
    print(f"wrote {out / 'lineages.md'}, .csv, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
