"""Model size: dense vs low-rank perturbations from 10⁵ parameters up, against plain inference.

    python bench/model_scale.py [--sizes 1e5 1e6 4.5e6 1e7] [--ranks 1 4 16] [--smoke]

For an MLP (256 → H → H → 16, 64 rows per branch) and the built-in transformer (16
sequences × 64 tokens per branch), N = 16 directions (32 branches, one batched call),
each configuration in a fresh process (so its peak RSS is its own), one thread:

* ``plain``: one forward of the same rows (32 × rows) through the unperturbed model, and
  the same per-sample loss on its outputs (what a branch's reward costs, without noise);
* ``iteration``: an ARS iteration of the engine (``ARSTrainer.step``), split into noise
  (regenerating the 16 directions), branch forward, update (Σ w_k δ_k and θ += ...) and
  communication (one rank here: the gather's bookkeeping);
* ``eval/plain``: branch-forward throughput as a fraction of plain inference (1.0 = as fast);
* ``RSS``: the process's peak resident memory, and the model's own bytes.

Dense perturbations run where their [32, P] stacks fit (``--dense-max``). The ratios are
measured side by side in one run; the bare times depend on the machine.

Last line: one JSON object. ``--smoke``: 10⁵ parameters, R = 1 only, tiny rows — seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
SMOKE = dict(sizes=[1e5], ranks=[1], rows=4, tokens=8, sequences=2, dense_max=1e5, iterations=1, worlds=[2])


def mlp_width(params: float) -> int:
    """H with 256·H + H² + 16·H (+ biases) ≈ params."""
    h = 16
    while 256 * h + h * h + 16 * h + 2 * h + 16 < params:
        h += 16
    return h


def transformer_config(params: float, tokens: int):
    from hpcars.algorithm.transformer import TransformerConfig, parameter_count

    layers, width = 2, 64
    while (
        parameter_count(
            TransformerConfig(vocab=256, d_model=width, heads=4, layers=layers, d_ff=4 * width, max_len=tokens)
        )
        < params
    ):
        width += 64
        if width >= 512 * layers:
            layers += 2
    heads = max(4, width // 128)
    heads = heads if width % heads == 0 else width // 64  # heads of 64 where 128s do not divide
    return TransformerConfig(vocab=256, d_model=width, heads=heads, layers=layers, d_ff=4 * width, max_len=tokens)


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, MB (Linux)."""
    for text in Path("/proc/self/status").read_text().splitlines():
        if text.startswith(field + ":"):
            return int(text.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(spec: dict) -> dict:
    """One configuration, in this process: the figures of one row."""
    from hpcars.threads import pin_threads

    pin_threads(1)
    import torch
    from torch import nn

    from hpcars.algorithm.transformer import Transformer
    from hpcars.config import TrainConfig
    from hpcars.run.engine import ARSTrainer
    from hpcars.runtime.comm import make_transport
    from hpcars.tasks.plugin import task_from
    from hpcars.tasks.problems import SupervisedProblem

    interpreter = memory_mb("VmRSS")  # torch and hpcars imported, nothing built
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if spec["model"] == "mlp":
        width = mlp_width(spec["size"])
        model = nn.Sequential(
            nn.Linear(256, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 16)
        )
        count = max(4096, 2 * spec["directions"] * spec["rows"])
        x, y = torch.randn(count, 256, generator=g), torch.randn(count, 16, generator=g)
        problem = SupervisedProblem(model=model, train=(x, y), loss="mse", batch_size=spec["rows"])
        rows, targets, per_branch = x, y, spec["rows"]

        def loss(out, target):
            return ((out - target) ** 2).mean(dim=1)
    else:
        config = transformer_config(spec["size"], spec["tokens"])
        model = Transformer(config)
        ids = torch.randint(0, 256, (2 * spec["directions"] * spec["sequences"], spec["tokens"] + 1), generator=g)

        def next_token(out, target):
            return nn.functional.cross_entropy(out.transpose(1, 2), target, reduction="none").mean(dim=1)

        problem = SupervisedProblem(
            model=model, train=(ids[:, :-1], ids[:, 1:]), loss=next_token, batch_size=spec["sequences"]
        )
        rows, targets, loss, per_branch = ids[:, :-1], ids[:, 1:], next_token, spec["sequences"]
    params = sum(p.numel() for p in model.parameters())
    transport = make_transport()
    share = 2 * spec["directions"] // transport.size  # this rank's branches: one batched call
    rows, targets = rows[: share * per_branch], targets[: share * per_branch]  # plain inference of the same rows
    cfg = TrainConfig(
        directions=spec["directions"],
        top_directions=spec["directions"],
        branch_batch=share,
        device="cpu",
        perturbation=spec["kind"],
        perturbation_rank=spec["rank"],
        branch_memory=spec["branch_memory"],
    )
    before = memory_mb("VmRSS")
    reset_peak()
    with torch.no_grad():  # plain inference: the same rows and the same per-sample loss, one call, no perturbation
        loss(model(rows), targets)  # warm; its peak above the RSS before it: the activations of one plain forward
        activations = memory_mb("VmHWM") - before
        start = time.perf_counter()
        loss(model(rows), targets)
        plain = time.perf_counter() - start
    task = task_from(problem, cfg)
    trainer = ARSTrainer(cfg, task, transport, [torch.device("cpu")])
    split = {"noise": 0.0, "forward": 0.0, "update": 0.0}
    directions, forward, step_vector = trainer.directions, task.branch_losses, trainer.step_vector

    def timed(fn, key):
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            split[key] += time.perf_counter() - start
            return out

        return call

    trainer.directions = timed(directions, "noise")
    task.branch_losses = timed(forward, "forward")
    trainer.step_vector = timed(step_vector, "update")  # includes regenerating the kept directions
    trainer.step()  # warm-up iteration (not counted)
    totals, comm = [], []
    for key in split:
        split[key] = 0.0
    for _ in range(spec["iterations"]):
        start = time.perf_counter()
        record = trainer.step()
        totals.append(time.perf_counter() - start)
        comm.append(record.comm_s)
    n = spec["iterations"]
    total, forward_s = sum(totals) / n, split["forward"] / n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peaks = [float(b) for b in transport.allgather_bytes(str(peak).encode())]
    row = {
        "model": spec["model"],
        "world": transport.size,
        "rank": transport.rank,
        "directions": spec["directions"],
        "call_width": trainer.width,
        "kind": spec["kind"] if spec["kind"] == "dense" else f"lowrank R={spec['rank']}",
        "params": params,
        "plain_s": plain,
        "iteration_s": total,
        "noise_s": split["noise"] / n,  # every direction drawn: for the branches and for the update
        "forward_s": forward_s,
        "update_s": split["update"] / n,  # Σ w_k δ_k, its directions included
        "comm_s": sum(comm) / n,
        "noise_update_share": (split["noise"] + split["update"])
        / n
        / total,  # noise counted once more in update: an upper bound
        "eval_over_plain": plain / forward_s,
        "peak_rss_mb": max(peaks),  # the largest rank's
        "model_mb": params * 4 / 2**20,
        "activations_mb": activations,
        "interpreter_mb": interpreter,
        # the goal's bound: 2 × (model + one plain forward's activations), against the peak
        "rss_over_bound": max(peaks) / (2 * (params * 4 / 2**20 + activations)),
    }
    return row


def line(row: dict) -> str:
    return (
        f"{row['model']:<11} P {row['params']:>11,}  {row['kind']:<12} x{row['world']} "
        f"(calls of {row['call_width']}) iteration {row['iteration_s']:8.3f} s "
        f"(noise {row['noise_s']:.3f}, forward {row['forward_s']:.3f}, update {row['update_s']:.3f}, "
        f"comm {row['comm_s']:.4f}; noise+update <= {100 * row['noise_update_share']:.0f} %)  "
        f"plain {row['plain_s']:.3f} s  eval/plain {row['eval_over_plain']:.2f}  "
        f"RSS {row['peak_rss_mb']:,.0f} MB (model {row['model_mb']:,.0f} MB, plain forward's activations "
        f"{row['activations_mb']:,.0f} MB, interpreter {row['interpreter_mb']:,.0f} MB: "
        f"{row['rss_over_bound']:.2f} of 2×(model + activations))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 4.5e6, 1e7], help="parameter counts")
    parser.add_argument("--ranks", type=int, nargs="*", default=[1, 4, 16], help="low-rank R values (none: dense only)")
    parser.add_argument("--models", nargs="+", default=["mlp", "transformer"], help="mlp, transformer")
    parser.add_argument("--rows", type=int, default=64, help="MLP rows per branch")
    parser.add_argument("--sequences", type=int, default=16, help="transformer sequences per branch")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per sequence")
    parser.add_argument("--dense-max", type=float, default=4.5e6, help="largest P run with dense perturbations")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per configuration")
    parser.add_argument("--directions", type=int, default=16, help="N (2N branches, one batched call per rank)")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2], help="MPI world sizes (ranks)")
    parser.add_argument(
        "--dense-memory", type=float, default=0.0, help="--branch-memory of the dense rows, GB (0 = auto)"
    )
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = common.parse(parser, SMOKE)
    if args.worker:
        row = worker(json.loads(args.worker))
        if row["rank"] == 0:
            print(json.dumps(row))
        return
    rows = []
    for model in args.models:
        for size in args.sizes:
            kinds = [("lowrank", r) for r in args.ranks] + ([("dense", 1)] if size <= args.dense_max else [])
            for (kind, rank), world in itertools.product(kinds, args.worlds):
                spec = dict(
                    model=model,
                    size=size,
                    kind=kind,
                    rank=rank,
                    rows=args.rows,
                    sequences=args.sequences,
                    tokens=args.tokens,
                    iterations=args.iterations,
                    directions=args.directions,
                    branch_memory=args.dense_memory if kind == "dense" else 0.0,
                )
                done = common.worker(__file__, spec, world)
                if done.returncode != 0:
                    print(f"{model} {size:.0e} {kind} x{world}: failed: {done.stderr.strip().splitlines()[-1]}")
                    continue
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(line(row), flush=True)
    print(json.dumps({"bench": "model_scale", "rows": rows}))


if __name__ == "__main__":
    main()
