"""ARS post-training of gradient-pretrained models vs continuing Adam, at equal wall clock.

    python bench/posttrain.py [--seeds 5] [--budget-s 20] [--problems digits,breast_cancer] [--smoke]

For each problem and seed, one process, one thread:

1. pre-train an MLP with Adam (lr 1e-3, batch 64) on 80 % of the training split,
   early-stopping on the other 20 % (patience 15 epochs): the "plateau";
2. from those weights (saved as a torch state_dict and loaded with ``--init-from``'s
   code path), spend ``--budget-s`` seconds of wall clock on each of
   * Adam, continued (same optimiser settings, on the whole training split);
   * ARS with ``--reward loss`` (−cross-entropy on the mini-batch);
   * ARS with ``--reward metric`` (mini-batch accuracy: no gradient exists);
3. report held-out accuracy (the test split, never used for training or stopping)
   before and after, median over seeds.

Problems: ``digits`` (scikit-learn's 8×8 digits, the built-in task's MLP 64-32-10)
and ``breast_cancer`` (scikit-learn's Wisconsin breast cancer set, 30 standardised
features, MLP 30-32-2) — both ship with scikit-learn, no download. Last line: one
JSON object.

``--smoke``: one seed, 2 pre-training epochs, 0.1 s per arm — seconds, the same code
path (for CI); its accuracies mean nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import common
import torch
import torch.nn.functional as F

from hpcars.algorithm.models import mlp
from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.run.initial import InitialWeights
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks.plugin import problem_task
from hpcars.tasks.problems import SupervisedProblem
from hpcars.tasks.supervised import digits_problem

ARS = dict(directions=32, top_directions=16, step_size=0.005, noise_std=0.005, batch_size=256, eval_every=0)
#: pre-training stops at a plateau or after this many epochs
PRETRAIN_EPOCHS = 1000
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(seeds=1, budget_s=0.1, pretrain_epochs=2)


def breast_cancer_problem(seed: int, hidden: int = 32) -> SupervisedProblem:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(20180307))
    cut = int(0.8 * len(y))
    mean, std = x[order[:cut]].mean(0), x[order[:cut]].std(0)
    x = (x - mean) / std
    torch.manual_seed(seed)
    model = mlp([x.shape[1], hidden, 2])
    return SupervisedProblem(
        model=model,
        train=(x[order[:cut]], y[order[:cut]]),
        test=(x[order[cut:]], y[order[cut:]]),
        loss="cross_entropy",
        metric="accuracy",
        name="breast_cancer",
    )


PROBLEMS = {"digits": lambda seed: digits_problem(seed, 32), "breast_cancer": breast_cancer_problem}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def adam_epochs(model, x, y, opt, generator, epochs=1, batch=64):
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch):
            idx = order[start : start + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()


def pretrain(problem: SupervisedProblem, seed: int, max_epochs: int = PRETRAIN_EPOCHS) -> tuple[torch.nn.Module, int]:
    """Adam to a plateau: early stopping on a validation fifth of the training split (at most ``max_epochs``)."""
    x, y = problem.train
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    cut = int(0.8 * len(y))
    fit, val = order[:cut], order[cut:]
    model = problem.model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state, since, epoch = float("inf"), None, 0, 0
    while since < 15 and epoch < max_epochs:
        adam_epochs(model, x[fit], y[fit], opt, g)
        epoch += 1
        with torch.no_grad():
            loss = float(F.cross_entropy(model(x[val]), y[val]))
        if loss < best - 1e-5:
            best, best_state, since = loss, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since += 1
    model.load_state_dict(best_state)
    return model, epoch


def continue_adam(model, problem, seed, budget_s) -> tuple[float, int]:
    x, y = problem.train
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed + 1)
    epochs, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s:
        adam_epochs(model, x, y, opt, g)
        epochs += 1
    return accuracy(model.eval(), *problem.test), epochs


def ars_posttrain(
    weights: Path, problem: SupervisedProblem, seed: int, budget_s: float, reward: str
) -> tuple[float, int]:
    cfg = TrainConfig(task=problem.name, seed=seed, device="cpu", reward=reward, init_from=str(weights), **ARS)
    task = problem_task(problem, cfg)
    trainer = ARSTrainer(cfg, task, SingleProcess(), [torch.device("cpu")], InitialWeights.read(str(weights)))
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s:
        trainer.step()
    metrics = task.summarize(trainer.task.evaluate_units(trainer.models[0], trainer.theta, [0], trainer.iteration))
    return metrics["eval_accuracy"], trainer.iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=20.0, help="wall clock of each post-training arm")
    parser.add_argument("--problems", default="digits,breast_cancer")
    parser.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS, help="cap on Adam pre-training")
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)
    result: dict = {"bench": "posttrain", "budget_s": args.budget_s, "ars": ARS, "problems": {}}
    for name in args.problems.split(","):
        rows = []
        for seed in range(args.seeds):
            problem = PROBLEMS[name](seed)
            model, epochs = pretrain(problem, seed, args.pretrain_epochs)
            before = accuracy(model.eval(), *problem.test)
            with tempfile.TemporaryDirectory() as tmp:
                weights = Path(tmp) / "pretrained.pt"
                torch.save(model.state_dict(), weights)
                problem = dataclasses.replace(problem, model=model)
                ars_loss, it_loss = ars_posttrain(weights, problem, seed, args.budget_s, "loss")
                ars_metric, it_metric = ars_posttrain(weights, problem, seed, args.budget_s, "metric")
                adam, adam_epochs_done = continue_adam(model.train(), problem, seed, args.budget_s)
            row = {
                "seed": seed,
                "pretrain_epochs": epochs,
                "before": before,
                "adam": adam,
                "ars_loss": ars_loss,
                "ars_metric": ars_metric,
                "adam_epochs": adam_epochs_done,
                "ars_loss_iterations": it_loss,
                "ars_metric_iterations": it_metric,
            }
            rows.append(row)
            print(
                f"{name} seed {seed}: pretrained {epochs} epochs, held-out accuracy {before:.4f} -> Adam {adam:.4f} "
                f"({adam_epochs_done} epochs), ARS loss {ars_loss:.4f} ({it_loss} it), ARS accuracy "
                f"{ars_metric:.4f} ({it_metric} it)",
                flush=True,
            )
        medians = {k: statistics.median(r[k] for r in rows) for k in ("before", "adam", "ars_loss", "ars_metric")}
        wins = {k: sum(r[k] > r["adam"] for r in rows) for k in ("ars_loss", "ars_metric")}
        result["problems"][name] = {"seeds": rows, "median": medians, "ars_beats_adam_seeds": wins}
        print(f"{name} median held-out accuracy: " + "  ".join(f"{k} {v:.4f}" for k, v in medians.items()))
    common.emit(result)


if __name__ == "__main__":
    main()
