"""Turn a sweep directory into a report folder: ``hpcars-report SWEEP_DIR``.

    hpcars-report sweeps/halfcheetah-20261124-101500 [--out REPORT_DIR] [--threshold 3430]

Writes into ``REPORT_DIR`` (default ``SWEEP_DIR/report``):

* ``runs.csv`` — the tidy table (one row per run and iteration);
* ``curves.png`` / ``curves.csv`` — evaluation score against training episodes and
  against env steps (or samples): median over seeds and the inter-quartile band, per
  setting. A run that ended (its ``summary.json`` is written) keeps its last score up to
  the longest run's end, so runs stopped early at the target still count
  (``analysis.seeds.score_grid``); a run still going counts up to its latest evaluation;
* ``threshold.md`` / ``threshold.csv`` — per setting: the fraction of seeds that
  reached the threshold and the median episodes / env steps to it, beside the ARS
  paper's figure where the task is one of its MuJoCo tasks (a seed that never
  reached it counts as slower than all that did);
* ``seeds.png`` / ``seeds.csv`` — the seed-success view (``analysis.seeds``): the
  fraction of seeds that reached the threshold, percentiles of their episodes to it,
  and the paper's Figure 2 (score bands over seeds; fraction reached vs episodes);
* ``sensitivity.png`` / ``sensitivity.csv`` — the final score against each swept
  hyper-parameter (median and quartiles over seeds and the other settings);
* ``README.md`` — an index with the tables inline;
* ``report.html`` — all of it as one self-contained page (plots embedded): open it in
  a browser, no server needed.

The threshold is ``--threshold``, else the runs' ``--target``, else the paper's for
the task; without one the threshold table is left out. Usable as a library too:
``write_report(sweep_dir, out_dir)``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpcars.errors import PathProblem
from hpcars.run.paths import writable_directory
from hpcars.tasks.paper import paper_episodes, paper_threshold

from .html import Section, write_html
from .load import evaluations, load_sweep
from .seeds import mark_finished, score_grid, seed_figure, seed_success


class ReportError(Exception):
    """Nothing to report, or nowhere to write it; ``str(err)`` is one line."""


def _x_axes(table: pd.DataFrame) -> list[tuple[str, str]]:
    axes = []
    if (table["total_episodes"] > 0).any():
        axes.append(("total_episodes", "training episodes"))
    unit = "env steps" if axes else "samples"
    axes.append(("total_samples", unit))
    return axes


def curve_bands(table: pd.DataFrame) -> pd.DataFrame:
    """Per setting and evaluated iteration: the x columns (median over the runs evaluated there),
    the runs counted and the score's quartiles over them (``score_grid``: ended runs keep their last)."""
    x_columns = [column for column, _ in _x_axes(table)]
    frames = []
    for setting, group in evaluations(table).groupby("setting"):
        scores = score_grid(group)
        quartiles = scores.quantile([0.25, 0.5, 0.75], axis=1).T.set_axis(
            ["score_q25", "score_median", "score_q75"], axis=1
        )
        x = group.groupby("iteration")[x_columns].median().reindex(scores.index)
        frame = pd.concat([x, scores.notna().sum(axis=1).rename("runs"), quartiles], axis=1).reset_index()
        frame.insert(0, "setting", setting)
        frames.append(frame.assign(seeds=group["seed"].nunique()))
    return pd.concat(frames, ignore_index=True)


def curves(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Median and inter-quartile band over seeds of the score, per setting; returns the bands drawn."""
    bands = curve_bands(table)
    axes_spec = _x_axes(table)
    fig = Figure(figsize=(6 * len(axes_spec), 4))
    axes = fig.subplots(1, len(axes_spec), squeeze=False)
    for ax, (column, label) in zip(axes[0], axes_spec, strict=True):
        for setting, band in bands.groupby("setting"):
            ax.plot(
                band[column].values, band["score_median"].values, label=f"{setting} ({band['seeds'].iloc[0]} seeds)"
            )
            ax.fill_between(band[column].values, band["score_q25"].values, band["score_q75"].values, alpha=0.25)
        ax.set_xlabel(label)
        ax.set_ylabel("evaluation score (median, IQR)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{table['task'].iloc[0]}: learning curves")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return bands


def threshold_table(table: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per setting: seeds, fraction reaching ``threshold``, median episodes and steps to it."""
    evals = evaluations(table)
    rows = []
    for setting, group in evals.groupby("setting"):
        per_seed = []
        for _, run in group.groupby("run"):
            hit = run[run["score"] >= threshold].sort_values("iteration").head(1)
            per_seed.append(
                (float(hit["total_episodes"].iloc[0]), float(hit["total_samples"].iloc[0]))
                if len(hit)
                else (math.inf, math.inf)
            )
        episodes = sorted(e for e, _ in per_seed)
        steps = sorted(s for _, s in per_seed)
        reached = sum(math.isfinite(e) for e in episodes)
        task, variant = group["task"].iloc[0], group["variant"].iloc[0]
        median_episodes = float(np.median(episodes))
        rows.append(
            {
                "setting": setting,
                "task": task,
                "variant": variant,
                "threshold": threshold,
                "seeds": len(per_seed),
                "reached_fraction": reached / len(per_seed),
                "median_episodes": median_episodes if math.isfinite(median_episodes) else None,
                "median_env_steps": float(np.median(steps)) if math.isfinite(np.median(steps)) else None,
                "paper_episodes": paper_episodes(task, variant) if threshold == paper_threshold(task) else None,
            }
        )
    return pd.DataFrame(rows)


def final_scores(table: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation score of every run, with its settings."""
    evals = evaluations(table)
    last = evals.sort_values("iteration").groupby("run").tail(1)
    return last.set_index("run")


def sensitivity(table: pd.DataFrame, png: Path) -> pd.DataFrame:
    """Final score against each swept hyper-parameter."""
    swept = [k for k in table.attrs.get("swept", []) if k != "seed"]
    finals = final_scores(table)
    rows = []
    for key in swept:
        for value, group in finals.groupby(key):
            q = group["score"].quantile([0.25, 0.5, 0.75])
            rows.append(
                {
                    "parameter": key,
                    "value": value,
                    "runs": len(group),
                    "score_q25": q[0.25],
                    "score_median": q[0.5],
                    "score_q75": q[0.75],
                }
            )
    frame = pd.DataFrame(rows)
    if swept:
        fig = Figure(figsize=(4.5 * len(swept), 3.6))
        axes = fig.subplots(1, len(swept), squeeze=False)
        for ax, key in zip(axes[0], swept, strict=True):
            part = frame[frame["parameter"] == key]
            x = np.arange(len(part))
            ax.errorbar(
                x,
                part["score_median"],
                yerr=[part["score_median"] - part["score_q25"], part["score_q75"] - part["score_median"]],
                fmt="o-",
                capsize=4,
            )
            ax.set_xticks(x, [str(v) for v in part["value"]])
            ax.set_xlabel(key)
            ax.set_ylabel("final score (median, IQR)")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(png, dpi=110)
    return frame


def _markdown(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [
            ""
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:.4g}" if isinstance(v, float) else str(v))
            for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def pick_threshold(table: pd.DataFrame, given: float | None, targets: list[float]) -> float | None:
    if given is not None:
        return given
    finite = [t for t in targets if t is not None and math.isfinite(t)]
    if finite:
        return finite[0]
    return paper_threshold(str(table["task"].iloc[0]))


def write_report(sweep_dir: Path, out_dir: Path | None = None, threshold: float | None = None) -> Path:
    table = load_sweep(sweep_dir)
    if table.empty:
        raise ReportError(f"{sweep_dir}: no readable runs")
    try:
        out = writable_directory(Path(out_dir or Path(sweep_dir) / "report"))
    except PathProblem as err:
        raise ReportError(f"--out: {err}") from None
    table = mark_finished(table, sweep_dir)
    table.to_csv(out / "runs.csv", index=False)
    curves(table, out / "curves.png").to_csv(out / "curves.csv", index=False)
    summary = (
        f"{table['run'].nunique()} runs, task {table['task'].iloc[0]}, "
        f"swept: {', '.join(table.attrs.get('swept', [])) or 'nothing'}"
    )
    sections = [Section("Learning curves", plot=out / "curves.png")]
    parts = [
        f"# Report: {sweep_dir}\n",
        f"{table['run'].nunique()} runs, task {table['task'].iloc[0]}, "
        f"swept: {', '.join(table.attrs.get('swept', [])) or 'nothing'}\n",
        "![curves](curves.png)\n",
    ]
    targets = [float(t) for t in table.get("target", pd.Series(dtype=float)).dropna().unique()]
    chosen = pick_threshold(table, threshold, targets)
    if chosen is not None:
        frame = threshold_table(table, chosen)
        frame.to_csv(out / "threshold.csv", index=False)
        (out / "threshold.md").write_text(_markdown(frame))
        parts += [f"## Episodes to {chosen:g}\n", _markdown(frame)]
        sections.append(Section(f"Episodes to {chosen:g}", table=frame))
        success = seed_success(table, chosen)
        success.to_csv(out / "seeds.csv", index=False)
        seed_figure(table, chosen, out / "seeds.png")
        parts += [f"## Every seed: {chosen:g}\n", "![seeds](seeds.png)\n", _markdown(success)]
        sections.append(Section(f"Every seed: {chosen:g}", plot=out / "seeds.png", table=success))
    sens = sensitivity(table, out / "sensitivity.png")
    sens.to_csv(out / "sensitivity.csv", index=False)
    if not sens.empty:
        parts += ["## Sensitivity\n", "![sensitivity](sensitivity.png)\n", _markdown(sens)]
        sections.append(Section("Sensitivity", plot=out / "sensitivity.png", table=sens))
    (out / "README.md").write_text("\n".join(parts))
    write_html(out / "report.html", f"Report: {sweep_dir}", summary, sections)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcars-report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (or any folder of run directories)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: SWEEP_DIR/report)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="score threshold (default: the runs' --target, else the paper's for the task)",
    )
    args = parser.parse_args(argv)
    try:
        out = write_report(args.sweep_dir, args.out, args.threshold)
    except ReportError as err:
        print(f"hpcars-report: error: {err}", file=sys.stderr)
        return 2
    print(f"report in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
