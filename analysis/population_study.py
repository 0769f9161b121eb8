"""Plain ARS against a population preset on the same seeds and the same episode budget.

    python -m hpcars.analysis.population_study --study swimmer SEEDS_SWEEP POP_SWEEP [AUTHORS_LOG] \\
        [--study hopper ...] [--arm hopper NAME SWEEP] [--budget EPISODES] [--out DIR]

Each ``--study`` names a task, the sweep of the plain preset (``jobs/examples/seeds-TASK.toml``),
the sweep of the population preset (``jobs/examples/pop-TASK.toml``) — each may be several
sweep directories joined by commas, to pool seeds — and, optionally, the
output of ``bench/fidelity.py --variants authors`` on the same seeds (its per-run lines; logs
of several invocations may be joined). ``--arm`` adds a named arm to a task, e.g. a control
run with other settings. Only finished runs count (a ``summary.json``), and only seeds
finished in both hpcars arms, so the arms are compared seed by seed.

Per task and arm: the success fraction; the median and 90th percentile of the training
episodes to the threshold over all seeds (all members' episodes up to the first
evaluation at the threshold; a seed that did not get there counts as never); over the
solved seeds, the median of those episodes divided by the members (what each lineage
trained: a population beats plain ARS only if truncation shortens a lineage's way by
more than the M lineages it pays for); the median
wall clock and training env steps of a run (to the threshold, or to the end of its
budget; runs that share a machine with others have comparable env steps, not wall
clocks); and the expected
training episodes to one solved run when a failed run is restarted with a fresh seed:

    E = mean cost of a successful run + (1 − p) / p · mean cost of a failed run

where a failed run costs all the episodes it spent (its whole budget) — that is, all the
episodes the arm spent over its seeds divided by the seeds it solved. Twenty seeds leave
E uncertain, so beside it stand a 95 % bootstrap interval (seeds resampled with
replacement, 2,000 draws, a fixed generator: the same table every time) and, for every
arm run on the plain arm's seeds, the ratio of its E to plain's with its interval from
the same draws (the seeds are resampled in pairs: both arms ran them). Writes
``population-study.md`` (the table), ``population-study.csv`` and
``population-study.png`` (episodes to the threshold per seed, plain vs population).

``--budget B`` reads every run as if it had been given ``--max-episodes B``. Nothing in a run
depends on its budget except where it stops, so a run cut at its first B training episodes
is that run, exactly, when B falls on one of its evaluations: the tool refuses any other B,
and a B beyond a run's own budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Outcome:
    """One finished run: did it reach the threshold, and at what cost."""

    seed: int
    episodes: float  # training episodes to the threshold; inf when not reached
    spent: int  # training episodes the run spent in all
    wall_s: float  # to the threshold, or the whole run
    steps: float  # training env steps (samples), to the threshold or the whole run
    members: int = 1  # a population's M: ``episodes / members`` is what each lineage trained
    spacing: int = 0  # training episodes from one evaluation to the next (0: unknown)
    limit: int = 0  # the run's own budget (0: unknown)


def per_iteration(config: dict) -> int:
    """Training episodes one iteration spends: every member's 2N branches, and the annealing judge's."""
    judge = config.get("anneal_pairs", 1) if config.get("anneal_t0") else 0
    return int(config["population"]) * 2 * (int(config["directions"]) + judge)


def budget(config: dict) -> int:
    """The training episodes a run may spend: --max-episodes, else its iterations' worth."""
    if config.get("max_episodes"):
        return int(config["max_episodes"])
    return int(config["iterations"]) * per_iteration(config)


def cut(run: Outcome, episodes: int) -> Outcome:
    """``run`` as the run given ``--max-episodes episodes`` (see the module docstring); ValueError
    where that is not exactly a prefix of ``run``."""
    if not run.spacing or episodes % run.spacing or episodes > run.limit:
        raise ValueError(
            f"seed {run.seed}: a budget must be a multiple of {run.spacing:,} training episodes "
            f"(one evaluation to the next) and at most the run's own {run.limit:,}"
        )
    if run.episodes <= episodes:
        return run
    return dataclasses.replace(run, episodes=math.inf, spent=episodes, wall_s=math.nan, steps=math.nan)


def read_sweep(root: Path) -> tuple[dict[int, Outcome], int]:
    """Every finished run under ``root``, by seed, and the largest budget among them."""
    out = {}
    for summary_path in sorted(Path(root).rglob("summary.json")):
        summary = json.loads(summary_path.read_text())
        config = json.loads((summary_path.parent / "config.json").read_text())
        seed = config["seed"]
        hit = summary.get("reached_target")
        episodes = float(hit["episodes"]) if hit else math.inf
        wall = float(hit["wall_s"]) if hit else float(summary["wall_s"])
        steps = float(hit["samples"]) if hit else float(summary.get("env_steps", math.nan))
        members, every = int(config.get("population", 1)), int(config.get("eval_every", 0))
        spacing = every * per_iteration(config)
        out[int(seed)] = Outcome(
            int(seed), episodes, int(summary["episodes"]), wall, steps, members, spacing, budget(config)
        )
    return out, max((run.limit for run in out.values()), default=0)


def read_sweeps(dirs: str) -> tuple[dict[int, Outcome], int]:
    """``read_sweep`` of one sweep directory or of several joined by commas (e.g. the study's
    seeds and a confirmation on other seeds); a seed in two of them is an error."""
    out, most = {}, 0
    for root in dirs.split(","):
        runs, budget_ = read_sweep(Path(root))
        twice = sorted(set(out) & set(runs))
        if twice:
            raise ValueError(f"seed {twice[0]} is in more than one of {dirs}")
        out, most = {**out, **runs}, max(most, budget_)
    return out, most


def read_authors(path: Path, task: str) -> dict[int, Outcome]:
    """The authors' port's runs for ``task``, by seed, from bench/fidelity.py's per-run lines
    (``swimmer  authors  seed 100: 420`` or ``...: not reached``); one file or several joined."""
    out = {}
    for line in Path(path).read_text().splitlines():
        words = line.replace(":", " ").split()
        if len(words) >= 5 and words[0] == task and words[1] == "authors" and words[2] == "seed":
            seed = int(words[3])
            episodes = math.inf if words[4] == "not" else float(words[4])
            out[seed] = Outcome(seed, episodes, -1, math.nan, math.nan)
    return out


BOOTSTRAP_DRAWS = 2000


def expected_draws(outcomes: list[Outcome], picks: np.ndarray | None = None) -> np.ndarray:
    """``expected_to_solve`` of each row of ``picks`` [D, n], indices into ``outcomes`` (inf where
    a row solved none); by default BOOTSTRAP_DRAWS resamples of the seeds with replacement from a
    fixed generator, so arms with as many seeds get the same resamples (paired by position)."""
    if picks is None:
        n = len(outcomes)
        picks = np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP_DRAWS, n))
    episodes = np.array([o.episodes for o in outcomes])[picks]
    solved = np.isfinite(episodes)
    cost = np.where(solved, episodes, np.array([o.spent for o in outcomes], dtype=float)[picks])
    n_solved = solved.sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(n_solved > 0, cost.sum(axis=1) / n_solved, math.inf)


def expected_to_solve(outcomes: list[Outcome]) -> float:
    """Expected training episodes to one solved run, restarting failed runs (inf if none solved):
    mean solved cost + (1 − p)/p · mean failed cost, which is all the episodes spent / seeds solved."""
    return float(expected_draws(outcomes, picks=np.arange(len(outcomes))[None])[0])


def interval(values: np.ndarray) -> tuple[float, float]:
    """The central 95 % of ``values`` (inf allowed), from the sorted values themselves."""
    ordered = np.sort(values)
    return float(ordered[int(0.025 * len(ordered))]), float(ordered[math.ceil(0.975 * len(ordered)) - 1])


def arm_row(task: str, arm: str, outcomes: list[Outcome], plain: list[Outcome] | None = None) -> dict[str, object]:
    """One row of the table; ``plain``: the plain arm's outcomes on the same seeds, in the same
    order, for the ratio of expected episodes (None: no ratio)."""
    episodes = np.array([o.episodes for o in outcomes])
    reached = int(np.isfinite(episodes).sum())

    def pct(q: float) -> float:
        return float(np.percentile(episodes, q, method="lower"))  # a seed's own count, never interpolated

    per_member = [o.episodes / o.members for o in outcomes if math.isfinite(o.episodes)]
    draws = expected_draws(outcomes) if arm != "authors" else np.full(2, math.nan)
    low, high = interval(draws)
    ratio = ratio_low = ratio_high = math.nan
    if plain is not None and arm != "authors":
        ratio = expected_to_solve(outcomes) / expected_to_solve(plain)
        with np.errstate(invalid="ignore"):
            ratio_low, ratio_high = interval(draws / expected_draws(plain))
    return {
        "task": task,
        "arm": arm,
        "seeds": len(outcomes),
        "reached": reached,
        "success": reached / len(outcomes),
        "median_episodes": pct(50),
        "p90_episodes": pct(90),
        # what a population pays for: episodes per member (per lineage) on its solved seeds
        "median_member_episodes_solved": float(np.median(per_member)) if per_member else math.nan,
        "median_wall_s": float(np.median([o.wall_s for o in outcomes])),
        "median_env_steps": float(np.median([o.steps for o in outcomes])),
        "expected_episodes_to_solve": expected_to_solve(outcomes) if arm != "authors" else math.nan,
        "expected_low": low,
        "expected_high": high,
        "expected_vs_plain": ratio,
        "expected_vs_plain_low": ratio_low,
        "expected_vs_plain_high": ratio_high,
    }


def _cell(value: float, budget: int) -> str:
    if isinstance(value, float) and math.isinf(value):
        return f"> {budget:,}"
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return f"{value:,.0f}"


def _span(low: float, high: float, fmt: str) -> str:
    if math.isnan(low) or math.isnan(high):
        return ""
    return f" ({fmt.format(low) if math.isfinite(low) else '∞'}–{fmt.format(high) if math.isfinite(high) else '∞'})"


def _ratio(row) -> str:
    if math.isnan(row.expected_vs_plain):
        return "—"
    return f"{row.expected_vs_plain:.2f}{_span(row.expected_vs_plain_low, row.expected_vs_plain_high, '{:.2f}')}"


def markdown(table: pd.DataFrame, budgets: dict[str, int]) -> str:
    lines = [
        "| task | arm | seeds reached | median episodes | p90 episodes | solved: median episodes per member "
        "| median env steps | median wall (s) | expected episodes to a solved run (95 % interval) "
        "| vs plain (95 % interval) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        b = budgets[row.task]
        lines.append(
            f"| {row.task} | {row.arm} | {row.reached}/{row.seeds} ({row.success:.0%}) "
            f"| {_cell(row.median_episodes, b)} | {_cell(row.p90_episodes, b)} "
            f"| {_cell(row.median_member_episodes_solved, b)} "
            f"| {_cell(row.median_env_steps, b)} | {_cell(row.median_wall_s, b)} "
            f"| {_cell(row.expected_episodes_to_solve, b)}{_span(row.expected_low, row.expected_high, '{:,.0f}')} "
            f"| {_ratio(row)} |"
        )
    return "\n".join(lines) + "\n"


def figure(studies: dict[str, dict[str, dict[int, Outcome]]], budgets: dict[str, int], path: Path) -> None:
    rows = max(len(arms) for arms in studies.values())  # legend lines under the tallest panel
    fig = Figure(figsize=(5.5 * len(studies), 4 + 0.17 * rows))
    axes = fig.subplots(1, len(studies), squeeze=False)
    styles = {"plain": ("o", "C0"), "population": ("^", "C1"), "authors": ("x", "C2")}
    # arms added with --arm, in order
    extra_styles = [("s", "C3"), ("D", "C4"), ("v", "C5"), ("P", "C6"), ("*", "C7"), ("h", "C8")]
    for ax, (task, arms) in zip(axes[0], studies.items(), strict=True):
        budget = budgets[task]
        extras = itertools.cycle(extra_styles)
        for k, (arm, runs) in enumerate(arms.items()):
            marker, color = styles[arm] if arm in styles else next(extras)
            seeds = sorted(runs)
            x = np.array(seeds) + (k - (len(arms) - 1) / 2) * 0.2
            y = np.array([runs[s].episodes for s in seeds])
            hit = np.isfinite(y)
            ax.scatter(x[hit], y[hit], marker=marker, color=color, label=f"{arm} ({hit.sum()}/{len(y)})")
            ax.scatter(
                x[~hit],
                np.full((~hit).sum(), budget * 1.08),
                marker=marker,
                facecolors="none",
                edgecolors=color if marker != "x" else None,
                color=color if marker == "x" else None,
            )
        ax.axhline(budget, color="k", ls="--", lw=0.8)
        ax.text(ax.get_xlim()[0], budget * 1.12, "not reached within the budget", fontsize=7, va="bottom")
        ax.set_ylim(0, budget * 1.25)
        ax.set_title(task)
        ax.set_xlabel("seed")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel("training episodes to the threshold (all members)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.15), frameon=False)  # under the panel
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _arms(parser: argparse.ArgumentParser, study: list[str], extra: list[list[str]]) -> tuple[dict, int, list[int]]:
    """One --study's arms on the seeds both of its sweeps finished: {arm: {seed: run}}, its budget, the seeds."""
    if len(study) not in (3, 4):
        parser.error("--study: TASK PLAIN POP [AUTHORS]")
    task, plain_dir, pop_dir = study[:3]
    try:
        (plain, plain_budget), (pop, pop_budget) = read_sweeps(plain_dir), read_sweeps(pop_dir)
    except ValueError as err:
        parser.error(f"--study {task}: {err}")
    if plain_budget != pop_budget:
        print(f"note: {task}: budgets differ, plain {plain_budget}, population {pop_budget}", file=sys.stderr)
    seeds = sorted(set(plain) & set(pop))
    if not seeds:
        parser.error(f"--study {task}: no seed finished in both sweeps")
    arms = {"plain": {s: plain[s] for s in seeds}, "population": {s: pop[s] for s in seeds}}
    if len(study) == 4:
        authors = read_authors(Path(study[3]), task)
        arms["authors"] = {s: authors[s] for s in seeds if s in authors}
    for arm_task, name, sweep in extra:
        if arm_task == task:
            try:
                runs, _ = read_sweeps(sweep)
            except ValueError as err:
                parser.error(f"--arm {name}: {err}")
            arms[name] = {s: runs[s] for s in seeds if s in runs}
    return arms, max(plain_budget, pop_budget), seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--study",
        nargs="+",
        action="append",
        required=True,
        metavar="TASK PLAIN POP [AUTHORS]",
        help="a task, its plain and population sweeps, and optionally bench/fidelity.py's output",
    )
    parser.add_argument(
        "--arm",
        nargs=3,
        action="append",
        default=[],
        metavar=("TASK", "NAME", "SWEEP"),
        help="one more arm for a --study task, e.g. a control with other settings (default: none)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=0,
        metavar="EPISODES",
        help="read every run cut at this many training episodes, a multiple of its evaluation spacing "
        "(default: 0, each run's own budget)",
    )
    parser.add_argument("--out", default=".", help="where the table and plot go (default: .)")
    args = parser.parse_args(argv)
    tasks = [study[0] for study in args.study]
    unknown = sorted({task for task, _, _ in args.arm} - set(tasks))
    if unknown:  # checked before any sweep is read
        parser.error(f"--arm: task {unknown[0]!r} has no --study (allowed: {', '.join(tasks)})")
    rows, studies, budgets = [], {}, {}
    for study in args.study:
        task = study[0]
        arms, budgets[task], seeds = _arms(parser, study, args.arm)
        if args.budget:
            try:
                arms = {arm: {s: cut(run, args.budget) for s, run in runs.items()} for arm, runs in arms.items()}
            except ValueError as err:
                parser.error(f"--budget {args.budget}: {err}")
            budgets[task] = args.budget
        studies[task] = arms
        base = [arms["plain"][s] for s in seeds]
        for arm, runs in arms.items():
            if runs:
                paired = base if arm != "plain" and sorted(runs) == seeds else None
                rows.append(arm_row(task, arm, [runs[s] for s in sorted(runs)], paired))
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "population-study.csv", index=False)
    text = markdown(table, budgets)
    (out / "population-study.md").write_text(text)
    figure(studies, budgets, out / "population-study.png")
    print(text, end="")
    print(f"wrote {out / 'population-study.md'}, .csv, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
