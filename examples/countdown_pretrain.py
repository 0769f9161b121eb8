"""Pretrain the Countdown transformer by teacher forcing, to a partial held-out accuracy.

    python examples/countdown_pretrain.py --seed S --out PATH [--stop-at 0.25] [--max-steps 6000]

The model is ``--task countdown``'s own (``hpcars.tasks.verifier.build_model``, initialised
from ``--seed``); it learns to write each training puzzle's known solution after its prompt
(cross-entropy on the answer's characters only, Adam, batches of 64). Every ``--eval-every``
steps its greedy answers to 500 held-out puzzles of its own (from ``VALIDATION_START`` on: never
the ones ``--task countdown`` reports) are verified; training stops once their accuracy reaches
``--stop-at`` (or after ``--max-steps``), and the ``state_dict`` is written
to ``--out`` (atomically) for ``python -m hpcars.train --task countdown --init-from PATH``.
The last line printed is a JSON object: steps, seconds, held-out accuracy.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from hpcars.algorithm.branches import BatchedModel
from hpcars.tasks.verifier import CountdownTask, build_model, teacher_batch


def held_out_accuracy(task: CountdownTask, model: torch.nn.Module) -> float:
    model.eval()
    batched = BatchedModel(model, torch.device("cpu"))
    flat = batched.spec.flatten(model)
    rows = task.evaluate_units(batched, flat, range(task.eval_units), 0)
    model.train()
    return float(rows[:, 0].sum() / rows[:, 2].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and batch order")
    parser.add_argument("--out", required=True, help="where to write the state_dict (.pt)")
    parser.add_argument("--stop-at", type=float, default=0.25, help="held-out accuracy that ends training")
    parser.add_argument("--max-steps", type=int, default=6000, help="Adam steps at most")
    parser.add_argument("--eval-every", type=int, default=250, help="steps between held-out evaluations")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--batch", type=int, default=64, help="puzzles per step")
    parser.add_argument("--eval-prompts", type=int, default=500, help="held-out puzzles evaluated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = CountdownTask(args.seed, eval_prompts=args.eval_prompts, eval_split="validation")
    model = build_model(args.seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    start, accuracy, step = time.perf_counter(), held_out_accuracy(task, model), 0
    print(f"step 0: held-out accuracy {accuracy:.3f}", flush=True)
    while step < args.max_steps and accuracy < args.stop_at:
        x, y = teacher_batch(task, torch.randint(len(task.pool), (args.batch,), generator=g))
        loss = F.cross_entropy(model(x).transpose(1, 2), y, ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % args.eval_every == 0 or step == args.max_steps:
            accuracy = held_out_accuracy(task, model)
            print(f"step {step}: loss {loss.item():.3f}, held-out accuracy {accuracy:.3f}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    torch.save(model.state_dict(), partial)
    partial.replace(out)
    seconds = time.perf_counter() - start
    print(json.dumps({"steps": step, "seconds": round(seconds, 1), "held_out_accuracy": accuracy, "out": str(out)}))


if __name__ == "__main__":
    main()
