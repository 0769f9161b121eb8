"""Compressed search spaces: accuracy of pruned / weight-shared digits MLPs, and a 1M-parameter subspace.

    python bench/compression.py [--seeds 5] [--budget-s 10] [--skip-large] [--smoke]

Part 1 (one process, one thread; the digits MLP 64-32-10 pre-trained with Adam to a
plateau exactly as in ``bench/posttrain.py``). For sparsity 0.5 / 0.8 / 0.9 / 0.95
(``pruned``) and 2 / 3 / 4 bits (``shared``), held-out accuracy of

  (a) the compressed model as is (z₀: the surviving weights / the k-means codebooks);
  (b) after ARS post-training in the compressed space for ``--budget-s`` seconds;
  (c) after the paper's gradient retraining for the same wall clock: Adam on z through
      the space's own map (autograd through the gather gives masked gradients for
      ``pruned`` and summed per-centroid gradients for ``shared``, Han et al.'s rule),

median over seeds, with the compression ratio in bytes (float32 model / compressed).

Part 2: a ~1M-parameter MLP (digits, hidden 13,334) trained by ARS from its random
initialisation in a d = 1,000 random subspace vs the full space, same iterations
and directions (equal evaluations): held-out accuracy, time per iteration, noise-
regeneration time; then the time per iteration for d = 100, 1,000, 10,000; and the
cost of the dense-in-chunks projection this bench rejected, measured on a slice of
the parameters and scaled. Last line: one JSON object.

``--smoke``: one seed, 2 pre-training epochs, 0.1 s per arm; part 2 on a 256-wide MLP
(19k parameters), one iteration per setting — seconds, the same code path (for CI);
its figures mean nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import dataclasses
import statistics
import time

import common
import torch
import torch.nn.functional as F
from posttrain import ARS, PRETRAIN_EPOCHS, pretrain
from torch.func import functional_call

from hpcars.config import TrainConfig
from hpcars.run.engine import ARSTrainer
from hpcars.runtime.comm import SingleProcess
from hpcars.tasks.plugin import problem_task
from hpcars.tasks.supervised import digits_problem

SETTINGS = [("pruned", {"sparsity": s}) for s in (0.5, 0.8, 0.9, 0.95)] + [("shared", {"bits": b}) for b in (2, 3, 4)]
#: part 2: the subspace dimensions timed
SUBSPACE_DIMS = (100, 1_000, 10_000)
#: ``--smoke``: the same measurement at tiny sizes, seconds of run time
SMOKE = dict(seeds=1, budget_s=0.1, pretrain_epochs=2, large_hidden=256, large_iterations=1)


def accuracy(trainer: ARSTrainer, z: torch.Tensor) -> float:
    task = trainer.task
    flat = trainer.space.to_params(z)
    return task.summarize(task.evaluate_units(trainer.models[0], flat, [0], 0))["eval_accuracy"]


def trainer_for(problem, seed: int, space: str, options: dict, extra: dict | None = None) -> ARSTrainer:
    cfg = TrainConfig(task="digits", seed=seed, device="cpu", search_space=space, **options, **(extra or ARS))
    return ARSTrainer(cfg, problem_task(problem, cfg), SingleProcess(), [torch.device("cpu")])


def gradient_retrain(trainer: ARSTrainer, budget_s: float, seed: int) -> tuple[float, int]:
    """Adam on z through the space's map, on the whole training split, for ``budget_s``."""
    task, space, spec = trainer.task, trainer.space, trainer.spec
    module = trainer.models[0].module
    z = space.initial().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    x, y = task.train_x, task.train_y
    epochs, start = 0, time.perf_counter()
    while time.perf_counter() - start < budget_s:
        order = torch.randperm(len(y), generator=g)
        for s in range(0, len(y), 64):
            idx = order[s : s + 64]
            opt.zero_grad()
            out = functional_call(module, spec.unflatten(space.to_params(z)), (x[idx],))
            F.cross_entropy(out, y[idx]).backward()
            opt.step()
        epochs += 1
    return accuracy(trainer, z.detach()), epochs


def ars_retrain(trainer: ARSTrainer, budget_s: float) -> tuple[float, int]:
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s:
        trainer.step()
    return accuracy(trainer, trainer.state.theta[0]), trainer.iteration


def part_one(seeds: int, budget_s: float, pretrain_epochs: int) -> dict:
    rows: dict[str, list[dict]] = {}
    for seed in range(seeds):
        problem = digits_problem(seed, 32)
        model, _ = pretrain(problem, seed, pretrain_epochs)
        pretrained = dataclasses.replace(problem, model=model)
        for space, options in SETTINGS:
            label = f"{space} " + ", ".join(f"{k} {v}" for k, v in options.items())
            t = trainer_for(pretrained, seed, space, options)
            info = t.space.describe()
            as_is = accuracy(t, t.space.initial())
            ars, iterations = ars_retrain(t, budget_s)
            grad, epochs = gradient_retrain(trainer_for(pretrained, seed, space, options), budget_s, seed)
            row = {
                "seed": seed,
                "as_is": as_is,
                "ars": ars,
                "gradient": grad,
                "ars_iterations": iterations,
                "gradient_epochs": epochs,
                "ratio": 4 * info["parameters"] / info["compressed_bytes"],
                "searched": info["searched"],
            }
            rows.setdefault(label, []).append(row)
            print(
                f"seed {seed} {label:22s} as is {as_is:.4f}  ARS {ars:.4f} ({iterations} it)  gradient {grad:.4f} "
                f"({epochs} epochs)  ratio {row['ratio']:.1f}x  d {info['searched']}",
                flush=True,
            )
    table = {}
    for label, r in rows.items():
        table[label] = {k: statistics.median(x[k] for x in r) for k in ("as_is", "ars", "gradient", "ratio")}
        table[label]["searched"] = r[0]["searched"]
        table[label]["ars_beats_gradient_seeds"] = sum(x["ars"] > x["gradient"] for x in r)
    return table


def timed_iterations(trainer: ARSTrainer, iterations: int) -> tuple[float, float]:
    """(seconds per iteration, of which regenerating the directions)."""
    noise_s = 0.0
    original = trainer.directions

    def counted(*args, **kwargs):
        nonlocal noise_s
        t = time.perf_counter()
        out = original(*args, **kwargs)
        noise_s += time.perf_counter() - t
        return out

    trainer.directions = counted
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.step()
    trainer.directions = original
    return (time.perf_counter() - start) / iterations, noise_s / iterations


def part_two(iterations: int, hidden: int) -> dict:
    problem = digits_problem(0, hidden)
    options = dict(directions=8, top_directions=8, step_size=0.02, noise_std=0.02, batch_size=64, eval_every=0)
    out: dict = {}
    for label, space, extra in (("full", "full", {}), ("subspace d=1000", "subspace", {"subspace_dim": 1000})):
        t = trainer_for(problem, 0, space, extra, options)
        per_it, noise = timed_iterations(t, iterations)
        out[label] = {
            "parameters": t.spec.size,
            "searched": t.space.size,
            "accuracy": accuracy(t, t.state.theta[0]),
            "s_per_iteration": per_it,
            "noise_s_per_iteration": noise,
        }
        print(
            f"{t.spec.size:,d}-parameter MLP {label:16s} {iterations} it: accuracy {out[label]['accuracy']:.4f}, "
            f"{per_it:.2f} s/it (noise {noise:.3f} s)",
            flush=True,
        )
    growth = {}
    for d in SUBSPACE_DIMS:
        t = trainer_for(problem, 0, "subspace", {"subspace_dim": d}, options)
        per_it, noise = timed_iterations(t, min(3, iterations))
        growth[d] = {"s_per_iteration": per_it, "noise_s_per_iteration": noise}
        print(f"subspace d={d:6d}: {per_it:.2f} s/it (noise {noise:.4f} s)", flush=True)
    out["time_vs_d"] = growth
    # the rejected alternative: a dense P regenerated in chunks, applied to one batch of 16 branches
    params, d, rows = out["full"]["parameters"], 1000, 16
    part = min(1 << 16, params)
    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(rows, d)
    for _ in range(4):
        z @ torch.randn(d, part, generator=g)
    per_chunk = (time.perf_counter() - start) / 4
    out["dense_in_chunks_s_per_call"] = per_chunk * params / part
    print(
        f"dense P in chunks (d=1000, 16 rows): {out['dense_in_chunks_s_per_call']:.1f} s per call, estimated from "
        f"{part}-parameter chunks",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=10.0)
    parser.add_argument("--large-iterations", type=int, default=30)
    parser.add_argument("--large-hidden", type=int, default=13_334, help="part 2: hidden width (1.0M parameters)")
    parser.add_argument("--skip-large", action="store_true", help="only part 1")
    parser.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS, help="cap on Adam pre-training")
    args = common.parse(parser, SMOKE)
    torch.set_num_threads(1)
    result: dict = {"bench": "compression", "budget_s": args.budget_s, "ars": ARS}
    result["digits"] = part_one(args.seeds, args.budget_s, args.pretrain_epochs)
    for label, row in result["digits"].items():
        print(
            f"median {label:22s} as is {row['as_is']:.4f}  ARS {row['ars']:.4f}  gradient {row['gradient']:.4f}  "
            f"ratio {row['ratio']:.1f}x  ARS > gradient on {row['ars_beats_gradient_seeds']} seeds"
        )
    if not args.skip_large:
        result["large"] = part_two(args.large_iterations, args.large_hidden)
    common.emit(result)


if __name__ == "__main__":
    main()
