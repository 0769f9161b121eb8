"""Population operators at an equal evaluation budget: which ones help ARS?

    mpirun -n 2 python bench/population.py [--tasks regression digits swimmer] [--seeds 0 1 2 3 4] [--smoke]

For each task every variant trains M members with N directions each for the same
number of iterations, so every variant spends 2N·M·iterations training
evaluations (mini-batch losses or episodes), plus, with annealing, its judge's
2J·M·iterations (old and new parameters on the same batch or episode seeds; the
table's ``evaluations`` column says what each variant spent). The score is the final evaluation of the
member with the best fitness — −held-out loss (regression), held-out accuracy
(digits), mean return of 100 episodes (Swimmer-v5) — reported as the median over
seeds, with the interquartile range and in how many seeds it beat plain ARS with
the same seed.

Variants: ``plain`` (M independent ARS learners, best one picked at the end),
``single`` (one learner with N·M directions and b·M kept: the same budget spent
on a single ARS step), each operator alone, and combinations. Two controls ask
whether the swarm's gain is only its momentum (w = 0.5 makes a steady step
1/(1 − w) = 2× longer): ``plain-2x-step`` (plain with 2α) and
``swarm-momentum-only`` (c₁ = c₂ = 0).

Last line: one JSON object.

``--smoke``: the regression, seeds 0 and 1, 2 members, 4 iterations, every variant —
seconds, the same code path (for CI); its scores mean nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common

from hpcars.config import TrainConfig, validate
from hpcars.run.loop import run
from hpcars.runtime.comm import make_transport

MEMBERS = 8
# Per task: the base configuration (plain ARS per member) and the generation length.
TASKS = {
    "regression": dict(task="regression", directions=8, iterations=300, step_size=0.02, noise_std=0.03),
    "digits": dict(task="digits", directions=8, iterations=150, step_size=0.02, noise_std=0.03, hidden=32),
    # the paper's Swimmer setting (V1, N = b = 1, α = 0.02, ν = 0.01), 8 members
    "swimmer": dict(task="Swimmer-v5", directions=1, iterations=40, step_size=0.02, noise_std=0.01, eval_episodes=100),
}
GENERATIONS = 10  # truncation every iterations / GENERATIONS
FINAL_TEMPERATURE = 0.05  # annealing cools from T0 = 1 to this at the last iteration

OPERATORS = {
    "truncation": lambda it: dict(generation_every=max(1, it // GENERATIONS)),
    "truncation+pbt": lambda it: dict(generation_every=max(1, it // GENERATIONS), pbt_perturb=True),
    "annealing": lambda it: dict(anneal_t0=1.0, anneal_cooling=FINAL_TEMPERATURE ** (1 / it)),
    "swarm": lambda it: dict(swarm=True),
    "repulsion": lambda it: dict(repulsion=0.5),  # radius: the default fraction of the way learnt
}
COMBINATIONS = (
    ("truncation", "annealing"),
    ("truncation", "swarm"),
    ("truncation", "repulsion"),
    ("truncation", "annealing", "swarm", "repulsion"),
)
#: ``--smoke``: the same runs at tiny sizes, seconds of run time
SMOKE = dict(tasks=["regression"], seeds=[0, 1], members=2, iterations=4)


def variants(iterations: int) -> dict[str, dict]:
    out: dict[str, dict] = {"plain": {}, "single": {}}
    for name, make in OPERATORS.items():
        out[name] = make(iterations)
    out["plain-2x-step"] = {"step_size_factor": 2.0}
    out["swarm-momentum-only"] = dict(swarm=True, swarm_cognitive=0.0, swarm_social=0.0)
    for combo in COMBINATIONS:
        merged: dict = {}
        for name in combo:
            merged.update(OPERATORS[name](iterations))
        out["+".join(combo)] = merged
    return out


def config(
    task: str, variant: str, options: dict, seed: int, run_dir: Path, members: int, iterations: int
) -> TrainConfig:
    base = dict(TASKS[task], iterations=iterations)
    options = dict(options)
    base["step_size"] *= options.pop("step_size_factor", 1.0)
    if variant == "single":  # the population's whole budget in one learner
        base["directions"] *= members
        population = 1
    else:
        population = members
    return validate(
        TrainConfig(
            **base,
            **options,
            population=population,
            seed=seed,
            device="cpu",
            eval_every=0,
            log_every=10**9,
            checkpoint_every=10**9,
            run_dir=str(run_dir),
        )
    )


def _repulsion_rate(metrics: Path, cfg: TrainConfig) -> float:
    """Members repelled per generation (``generation_every`` iterations; 10 without truncation)."""
    if not cfg.repulsion:
        return 0.0
    with metrics.open() as f:
        pushed = sum(int(float(row["repelled"] or 0)) for row in csv.DictReader(f))
    generation = cfg.generation_every or max(1, cfg.iterations // GENERATIONS)
    return pushed * generation / cfg.iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=None, help="subset of variants (default: all)")
    parser.add_argument("--members", type=int, default=MEMBERS, help="M of every population variant")
    parser.add_argument("--iterations", type=int, default=0, help="iterations of every run (0: the task's)")
    args = common.parse(parser, SMOKE)
    transport = make_transport()
    lead = transport.rank == 0
    root = Path(transport.bcast(tempfile.mkdtemp(prefix="hpcars-bench-") if lead else None))
    result: dict = {
        "bench": "population",
        "ranks": transport.size,
        "members": args.members,
        "seeds": args.seeds,
        "tasks": {},
    }
    for task in args.tasks:
        iterations = args.iterations or TASKS[task]["iterations"]
        table = variants(iterations)
        names = [v for v in table if args.variants is None or v in args.variants or v == "plain"]
        scores: dict[str, list[float]] = {}
        spent: dict[str, int] = {}
        fired: dict[str, list[float]] = {name: [] for name in names}
        for name in names:
            scores[name] = []
            for seed in args.seeds:
                cfg = config(task, name, table[name], seed, root / f"{task}-{name}-{seed}", args.members, iterations)
                done = run(cfg, transport, out=io.StringIO())
                summary = json.loads((done.run_dir / "summary.json").read_text()) if lead else {}
                scores[name].append(transport.bcast(summary.get("final", {}).get("score")))
                if lead:
                    spent[name] = done.trainer.per_member * args.members * done.trainer.iteration
                    fired[name].append(_repulsion_rate(done.run_dir / "metrics.csv", cfg))
        rows = {}
        for name in names:
            values = scores[name]
            q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
            wins = sum(v > p for v, p in zip(values, scores["plain"], strict=True))
            rows[name] = {
                "median": statistics.median(values),
                "q1": q[0],
                "q3": q[2],
                "wins_vs_plain": wins,
                "scores": values,
                "training_evaluations": spent.get(name),
                "repelled_per_generation": statistics.mean(fired[name]) if fired[name] else None,
                "options": {k: v for k, v in table[name].items()},
            }
            if lead:
                print(
                    f"{task:10s} {name:42s} median {rows[name]['median']:10.4f}  IQR [{q[0]:.4f}, {q[2]:.4f}]  "
                    f"beats plain in {wins}/{len(values)} seeds  evaluations {spent.get(name)}"
                    + (
                        f"  repelled/generation {rows[name]['repelled_per_generation']:.2f}"
                        if "repulsion" in name
                        else ""
                    ),
                    flush=True,
                )
        result["tasks"][task] = {"config": dict(TASKS[task], iterations=iterations), "variants": rows}
    if lead:
        shutil.rmtree(root, ignore_errors=True)
        common.emit(result)


if __name__ == "__main__":
    main()
