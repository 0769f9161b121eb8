"""Seed success: how many seeds reach a threshold, and how fast (the ARS paper's Figure 2).

The ARS paper (Mania, Guy & Recht 2018, §4.3) ran 100 seeds per task and reported
the fraction that reached each threshold and the spread of their learning curves.
For a sweep over many seeds this module gives, per setting:

* ``seed_success`` — seeds, the fraction that reached the threshold, and the
  10/25/50/75/90th percentiles over *all* seeds of the training episodes to it (a
  seed that never got there counts as never, so a percentile above the fraction
  reached is shown as missing);
* ``seed_figure`` — left: evaluation score against training episodes, median and
  the 10–90 and 25–75 percentile bands over seeds (a run stopped at the threshold
  keeps its last score); right: the fraction of seeds that reached the threshold
  against training episodes.

``score_grid`` is the scores over seeds that both this figure and the report's
``curves.png`` take quantiles of: a run that ended keeps its last score up to the
longest run, so that runs stopped early at the target still count (``mark_finished``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcars.run.checkpoint import DIRECTORY as CHECKPOINTS

from .load import evaluations

PERCENTILES = (10, 25, 50, 75, 90)
#: column of ``mark_finished``: the run ended (it wrote its summary.json)
FINISHED = "finished"
#: ``hpcars.run.output.SUMMARY_FILE``, written when a run ends (not imported: that module pulls in torch)
SUMMARY_FILE = "summary.json"


def mark_finished(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """``table`` (of ``load_sweep(root)``) with a ``finished`` column: the run wrote its summary.json."""
    root = Path(root)

    def finished(run: str) -> bool:
        run_dir = root if (root / CHECKPOINTS).is_dir() else root / run  # load_sweep of a single run names it
        return (run_dir / SUMMARY_FILE).exists()

    ended = {run: finished(run) for run in table["run"].unique()}
    return table.assign(**{FINISHED: table["run"].map(ended)})


def score_grid(evals: pd.DataFrame) -> pd.DataFrame:
    """The evaluation scores of one setting: one row per evaluated iteration, one column per run.

    A run keeps its last score between its evaluations, and a run that ended keeps it at
    every later iteration up to the longest run's last: seed sweeps stop runs at the target,
    and quantiles over the runs still going alone would leave out exactly the ones that got
    there (survivor bias). A run still going has no score past its latest evaluation. Without
    a ``finished`` column (``mark_finished``) every run counts as ended.
    """
    scores = evals.pivot_table(index="iteration", columns="run", values="score").sort_index()
    last = scores.apply(pd.Series.last_valid_index)
    ended = set(evals.loc[evals[FINISHED].astype(bool), "run"]) if FINISHED in evals else set(scores.columns)
    filled = scores.ffill()
    for run in scores.columns:
        if run not in ended:
            filled.loc[filled.index > last[run], run] = np.nan
    return filled


def cost_column(table: pd.DataFrame) -> tuple[str, str]:
    """What a seed's cost is counted in: training episodes (RL), else samples (supervised)."""
    if (table["total_episodes"] > 0).any():
        return "total_episodes", "training episodes"
    return "total_samples", "training samples"


def episodes_to(table: pd.DataFrame, threshold: float) -> dict[str, list[float]]:
    """Per setting: every seed's training episodes (or samples) at its first evaluation >= threshold
    (inf: never), sorted."""
    column, _ = cost_column(table)
    out: dict[str, list[float]] = {}
    for setting, group in evaluations(table).groupby("setting"):
        per_seed = []
        for _, run in group.groupby("run"):
            hit = run[run["score"] >= threshold].sort_values("iteration").head(1)
            per_seed.append(float(hit[column].iloc[0]) if len(hit) else math.inf)
        out[str(setting)] = sorted(per_seed)
    return out


def seed_success(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    rows = []
    for setting, episodes in episodes_to(table, threshold).items():
        row: dict[str, object] = {
            "setting": setting,
            "seeds": len(episodes),
            "reached_fraction": sum(math.isfinite(e) for e in episodes) / len(episodes),
        }
        for p in PERCENTILES:
            value = float(np.percentile(episodes, p, method="lower"))  # a seed's own count, never interpolated
            row[f"p{p}_episodes"] = value if math.isfinite(value) else None
        rows.append(row)
    return pd.DataFrame(rows)


def seed_figure(table: pd.DataFrame, threshold: float, path: Path) -> Path:
    evals = evaluations(table)
    column, label = cost_column(table)
    fig = Figure(figsize=(12, 4))
    (left, right) = fig.subplots(1, 2)
    reached = episodes_to(table, threshold)
    for setting, group in evals.groupby("setting"):
        scores = score_grid(group)
        x = group.groupby("iteration")[column].max().reindex(scores.index)
        q = np.nanpercentile(scores.to_numpy(), [10, 25, 50, 75, 90], axis=1)
        (line,) = left.plot(x, q[2], label=f"{setting} ({scores.shape[1]} seeds)")
        left.fill_between(x, q[0], q[4], color=line.get_color(), alpha=0.15)
        left.fill_between(x, q[1], q[3], color=line.get_color(), alpha=0.3)
        episodes = np.array(reached[str(setting)])
        finite = episodes[np.isfinite(episodes)]
        steps = np.concatenate(([0.0], finite, [x.max()]))
        fraction = np.concatenate(([0.0], np.arange(1, len(finite) + 1), [len(finite)])) / len(episodes)
        right.step(steps, fraction, where="post", color=line.get_color(), label=str(setting))
    left.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    left.set_xlabel(label)
    left.set_ylabel("score: median; 25-75, 10-90 % of seeds")
    right.set_xlabel(label)
    right.set_ylabel(f"fraction of seeds that reached {threshold:g}")
    right.set_ylim(0, 1.02)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.suptitle(f"{table['task'].iloc[0]}: every seed")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
