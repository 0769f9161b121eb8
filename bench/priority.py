"""Uniform vs loss-prioritized mini-batches at an equal evaluation budget.

    python bench/priority.py [--seeds 5] [--smoke]

Two problems, each trained by ARS from the same start with ``--batch-priority
uniform`` and ``--batch-priority loss`` (α = 0.6, β 0.4 → 1, the PER paper's
proportional variant): the same iterations, directions and batch size, so the
same 2N branch evaluations per iteration; the prioritized arm also pays one
forward pass of θ per iteration (counted in ``extra_forward_share``).

* ``digits`` — the built-in task (MLP 64-32-10, batch 256, N = 16, V1);
  held-out accuracy.
* ``outliers`` — the toy polynomial regression as a finite training set of 4,096
  samples in which 5 % of the targets are corrupted (+ 50·N(0, 1)), smooth-L1 loss,
  the linear model of the built-in task; held-out *clean* smooth-L1 loss.

Median over seeds, and on how many seeds prioritized beat uniform. Last line: one
JSON object.

``--smoke``: one seed, 3 iterations per arm — seconds, the same code path (for CI);
its figures mean nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time

import common
import torch

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks.plugin import problem_task
from hpcars.tasks.problems import SupervisedProblem
from hpcars.tasks.supervised import Regression, digits_problem


def outliers_problem(seed: int, size: int = 4096, corrupted: float = 0.05) -> SupervisedProblem:
    """The built-in regression as a finite set with corrupted targets; a clean held-out set."""
    stream = Regression(seed, size, track_obs=False)
    g = torch.Generator().manual_seed(seed)
    train, test = stream.sample(g, 0, size), stream.sample(g, 0, size)
    y = train.y.clone()
    bad = torch.randperm(size, generator=g)[: int(corrupted * size)]
    y[bad] += 50 * torch.randn(len(bad), 1, generator=g)
    return SupervisedProblem(
        model=stream.build_model(),
        train=(train.x, y),
        test=(test.x, test.y),
        loss="smooth_l1",
        batch_size=256,
        name="outliers",
    )


#: problem -> (factory, ARS options, iterations, the held-out metric compared)
SETUPS = {
    "digits": (digits_problem, dict(directions=16, step_size=0.02, noise_std=0.03), 300, "eval_accuracy"),
    "outliers": (outliers_problem, dict(directions=16, step_size=0.02, noise_std=0.03), 1000, "eval_loss"),
}
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(seeds=1, iterations=3)


def train(problem: SupervisedProblem, options: dict, seed: int, iterations: int, priority: str) -> tuple[dict, float]:
    cfg = TrainConfig(task=problem.name, seed=seed, device="cpu", batch_priority=priority, **options)
    task = problem_task(problem, cfg)
    trainer = ARSTrainer(cfg, task, SingleProcess(), [torch.device("cpu")])
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.step()
    elapsed = time.perf_counter() - start
    return task.summarize(task.evaluate_units(trainer.models[0], trainer.theta, [0], trainer.iteration)), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=0, help="iterations per arm (0: each problem's)")
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)
    result: dict = {"bench": "priority", "problems": {}}
    for name, (make, options, default_iterations, metric) in SETUPS.items():
        iterations = args.iterations or default_iterations
        better = (lambda a, b: a > b) if metric == "eval_accuracy" else (lambda a, b: a < b)
        rows = []
        for seed in range(args.seeds):
            uniform, t_uniform = train(make(seed), options, seed, iterations, "uniform")
            prioritized, t_prioritized = train(make(seed), options, seed, iterations, "loss")
            rows.append(
                {
                    "seed": seed,
                    "uniform": uniform[metric],
                    "prioritized": prioritized[metric],
                    "uniform_s": t_uniform,
                    "prioritized_s": t_prioritized,
                }
            )
            print(
                f"{name} seed {seed}: {metric} uniform {uniform[metric]:.4g}, prioritized {prioritized[metric]:.4g} "
                f"({t_uniform:.1f} s vs {t_prioritized:.1f} s)",
                flush=True,
            )
        summary = {
            "metric": metric,
            "median_uniform": statistics.median(r["uniform"] for r in rows),
            "median_prioritized": statistics.median(r["prioritized"] for r in rows),
            "prioritized_better_seeds": sum(better(r["prioritized"], r["uniform"]) for r in rows),
            "time_ratio": statistics.median(r["prioritized_s"] / r["uniform_s"] for r in rows),
            "iterations": iterations,
            "extra_forward_share": 1 / (2 * options["directions"]),
            "seeds": rows,
        }
        result["problems"][name] = summary
        print(
            f"{name}: median {metric} uniform {summary['median_uniform']:.4g}, prioritized "
            f"{summary['median_prioritized']:.4g}; prioritized better on {summary['prioritized_better_seeds']} of "
            f"{len(rows)} seeds; time x{summary['time_ratio']:.3f}"
        )
    common.emit(result)


if __name__ == "__main__":
    main()
