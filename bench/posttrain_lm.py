"""Post-training a pretrained transformer on a verifier reward: ES (ARS) against GRPO.

    python bench/posttrain_lm.py [--seeds 1000 1001 1002] [--budget 48000] [--arms ...] [--jobs 2]
                                 [--eval-split validation] [--out DIR] [--plot PNG] [--smoke]

Per seed: ``examples/countdown_pretrain.py`` makes the starting model (teacher forcing until
25 % held-out accuracy); then each arm spends ``--budget`` generated completions on the
training prompts (``--task countdown``: the same pool, the same verifier):

* ``es-lowrank`` / ``es-dense``: ``python -m hpcars.train --preset countdown --init-from ...``
  (greedy answers, N = 15: 30 branches × 16 prompts = 480 completions an iteration);
* ``grpo8`` / ``grpo30``: ``hpcars.baselines.grpo`` with groups of 8 (60 prompts) or 30 (16
  prompts) — 480 completions an iteration too — sampled at temperature 1, one clipped Adam
  step per batch (lr ``GRPO_LR``), no KL term (β = 0; ``--grpo-beta``);
* ``sft``: continued teacher forcing on the training puzzles' solutions — labels that the
  other arms never see; its budget is counted in training examples.

Every arm is evaluated on the same 500 held-out puzzles (greedy), at the start and every
``EVAL_EVERY`` batches. Reported per arm: held-out accuracy at the budget (median and range over
seeds, and its spread), its gain over the pretrained model, the share of well-formed but wrong
answers (format without arithmetic: reward hacking), and training seconds (one core each,
evaluations excluded). Every arm generates 12 tokens per completion, so tokens are 12× the
completions. Tune with ``--eval-split validation`` on seeds apart from the reported ones
(held-out puzzles from 2000 on; the reports score the first ones). ``--plot`` draws accuracy
against completions and against seconds. Last line: one JSON object. ``--smoke``: one seed, a
tiny pretraining and one batch per arm.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
PER_BATCH = 480  # completions an arm generates per batch (ES: 30 branches × 16 prompts)
EVAL_EVERY = 10  # batches between held-out evaluations
GRPO_LR = 1e-4  # chosen on the tuning seed (BENCHMARKS.md)
DENSE_STEP_SIZE = 0.002  # es-dense's α, chosen on the tuning seed (es-lowrank takes the preset's)
SFT_LR = 1e-3  # the pretraining's
SFT_BATCH = 64  # training examples per teacher-forcing step
SMOKE = dict(seeds=[0], budget=PER_BATCH, pretrain_steps=10, eval_prompts=50)


def pretrain(seed: int, out: Path, steps: int, eval_prompts: int) -> Path:
    path = out / f"pretrained-{seed}.pt"
    if not path.exists():
        command = [sys.executable, str(ROOT / "examples" / "countdown_pretrain.py"), "--seed", str(seed)]
        command += ["--out", str(path), "--max-steps", str(steps), "--eval-prompts", str(eval_prompts)]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return path


def es_arm(kind: str, seed: int, start: Path, batches: int, out: Path, args: argparse.Namespace) -> dict:
    """ARS with the ``countdown`` preset (``--step-size``, ``--noise-std``, ``--rank``: overrides)."""
    step_size = args.dense_step_size if kind == "dense" and args.dense_step_size else args.step_size
    overrides = [("--step-size", step_size), ("--noise-std", args.noise_std), ("--perturbation-rank", args.rank)]
    overrides = [(flag, value) for flag, value in overrides if value]
    tag = "".join(f"{flag[2:]}{value}" for flag, value in overrides)
    run_dir = out / f"es-{kind}-{seed}-{batches}x{PER_BATCH}-{args.eval_split}{tag}"
    command = [sys.executable, "-m", "hpcars.train", "--preset", "countdown", "--init-from", str(start)]
    command += ["--perturbation", kind, "--seed", str(seed), "--iterations", str(batches)]
    command += ["--eval-every", str(EVAL_EVERY), "--eval-prompts", str(args.eval_prompts)]
    command += ["--eval-split", args.eval_split, "--run-dir", str(run_dir)]
    for flag, value in overrides:
        command += [flag, str(value)]
    t = time.perf_counter()
    if not (run_dir / "summary.json").exists():
        subprocess.run([*command, "--quiet"], check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    summary = json.loads((run_dir / "summary.json").read_text())
    curve, train_s = [(0, 0.0, summary["initial"]["score"])], 0.0
    with open(run_dir / "metrics.csv") as f:
        for r in csv.DictReader(f):
            train_s += float(r["rollout_s"]) + float(r["comm_s"]) + float(r["update_s"])
            if r["score"]:
                curve.append((int(r["iteration"]) * PER_BATCH, round(train_s, 2), float(r["score"])))
    return dict(
        curve=curve,
        final=summary["final"]["eval_accuracy"],
        format_only=summary["final"]["eval_format_only"],
        initial=summary["initial"]["eval_accuracy"],
        train_s=round(train_s, 1),
        wall_s=round(wall, 1),  # with evaluations; 0 when the run was kept from before (--out)
    )


def gradient_arm(arm: str, seed: int, start: Path, batches: int, args: argparse.Namespace) -> dict:
    """GRPO (``grpo8``, ``grpo30``) or continued teacher forcing (``sft``), in this process."""
    import torch
    import torch.nn.functional as F

    from hpcars.algorithm.branches import BatchedModel
    from hpcars.algorithm.noise import stream_key
    from hpcars.baselines.grpo import answer_logprobs, group_advantages, grpo_loss, sample
    from hpcars.tasks.verifier import (
        ANSWER_STEPS,
        CountdownTask,
        build_model,
        prompt_tokens,
        scores,
        teacher_batch,
    )

    torch.set_num_threads(1)
    task = CountdownTask(seed, eval_prompts=args.eval_prompts, eval_split=args.eval_split)
    beta = args.grpo_beta
    model = build_model(seed)
    model.load_state_dict(torch.load(start, weights_only=True))
    reference = build_model(seed)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=args.sft_lr if arm == "sft" else args.grpo_lr)
    g = torch.Generator().manual_seed(seed)

    def evaluate() -> tuple[float, float]:
        model.eval()
        batched = BatchedModel(model, torch.device("cpu"))
        rows = task.evaluate_units(batched, batched.spec.flatten(model), range(task.eval_units), 0)
        model.train()
        return float(rows[:, 0].sum() / rows[:, 2].sum()), float(rows[:, 1].sum() / rows[:, 2].sum())

    initial, _ = evaluate()
    curve, train_s = [(0, 0.0, initial)], 0.0
    group = 30 if arm == "grpo30" else 8
    for batch in range(1, batches + 1):
        t = time.perf_counter()
        if arm == "sft":
            x, y = teacher_batch(task, torch.randint(len(task.pool), (SFT_BATCH,), generator=g))
            loss = F.cross_entropy(model(x).transpose(1, 2), y, ignore_index=-100)
        else:
            k = PER_BATCH // group
            picks = [stream_key(seed, 0x6772706F, batch, i) % len(task.pool) for i in range(k)]  # "grpo"
            puzzles = [task.pool[i] for i in picks]
            prompts = prompt_tokens(puzzles)
            model.eval()
            answers, mask = sample(model, prompts, group, ANSWER_STEPS, g)
            rewards = torch.tensor(scores(answers.view(k, group, -1).transpose(0, 1), puzzles)[..., 0]).T.float()
            model.train()
            with torch.no_grad():
                old = answer_logprobs(model, prompts, answers)
                ref = answer_logprobs(reference, prompts, answers) if beta else None
            logp = answer_logprobs(model, prompts, answers)
            loss = grpo_loss(logp, old, group_advantages(rewards).reshape(-1), mask, beta=beta, ref_logp=ref)
        opt.zero_grad()
        loss.backward()
        opt.step()
        train_s += time.perf_counter() - t
        if batch % EVAL_EVERY == 0 or batch == batches:
            curve.append((batch * (SFT_BATCH if arm == "sft" else PER_BATCH), round(train_s, 2), evaluate()[0]))
    final, format_only = evaluate()
    return dict(curve=curve, final=final, format_only=format_only, initial=initial, train_s=round(train_s, 1))


def plot(runs: list[dict], arms: list[str], path: str) -> None:
    """Held-out accuracy against completions and against training seconds: the median over seeds
    (a line) and the range (a band), one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for arm in arms:
        curves = [np.array(r["curve"]) for r in runs if r["arm"] == arm]
        points = min(len(c) for c in curves)
        stack = np.stack([c[:points] for c in curves])  # [seeds, points, (completions, seconds, accuracy)]
        accuracy = stack[..., 2]
        for ax, x in ((axes[0], stack[0, :, 0]), (axes[1], np.median(stack[..., 1], axis=0))):
            (line,) = ax.plot(x, np.median(accuracy, axis=0), label=arm)
            ax.fill_between(x, accuracy.min(axis=0), accuracy.max(axis=0), color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("completions generated (sft: training examples)")
    axes[1].set_xlabel("training seconds (one core)")
    axes[0].set_ylabel("held-out accuracy")
    axes[0].legend()
    fig.suptitle(f"Countdown post-training, {len({r['seed'] for r in runs})} seeds: median and range")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="seeds (pretraining and post-training)"
    )
    parser.add_argument("--budget", type=int, default=48_000, help="completions (sft: examples) per arm")
    parser.add_argument("--arms", nargs="+", default=["es-lowrank", "es-dense", "grpo8", "grpo30", "sft"])
    parser.add_argument("--jobs", type=int, default=2, help="arms run at a time (one core each)")
    parser.add_argument("--pretrain-steps", type=int, default=6000, help="teacher-forcing steps at most")
    parser.add_argument("--eval-prompts", type=int, default=500, help="held-out puzzles per evaluation")
    parser.add_argument(
        "--eval-split", choices=("test", "validation"), default="test", help="held-out puzzles: tune on validation"
    )
    parser.add_argument("--step-size", type=float, default=0.0, help="ES: α (0 = the preset's)")
    parser.add_argument(
        "--dense-step-size", type=float, default=DENSE_STEP_SIZE, help="ES dense: α (0 = as --step-size)"
    )
    parser.add_argument("--noise-std", type=float, default=0.0, help="ES: ν (0 = the preset's)")
    parser.add_argument("--rank", type=int, default=0, help="ES lowrank: R (0 = the preset's)")
    parser.add_argument("--grpo-lr", type=float, default=GRPO_LR, help="GRPO's Adam learning rate")
    parser.add_argument("--grpo-beta", type=float, default=0.0, help="GRPO's KL coefficient β")
    parser.add_argument("--sft-lr", type=float, default=SFT_LR, help="continued teacher forcing's learning rate")
    parser.add_argument("--out", default="", help="keep pretrained models and runs here (default: a temporary dir)")
    parser.add_argument("--plot", default="", help="write the accuracy curves to this image")
    args = common.parse(parser, SMOKE)
    batches = max(1, args.budget // PER_BATCH)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        starts = dict(
            zip(
                args.seeds,
                pool.map(lambda s: pretrain(s, out, args.pretrain_steps, args.eval_prompts), args.seeds),
                strict=True,
            )
        )

        def one(job: tuple[str, int]) -> dict:
            arm, seed = job
            if arm.startswith("es-"):
                result = es_arm(arm[3:], seed, starts[seed], batches, out, args)
            else:  # kept in --out as JSON, like the ES runs' directories
                lr = args.sft_lr if arm == "sft" else args.grpo_lr
                setting = f"{batches}x{PER_BATCH}-{args.eval_split}-lr{lr:g}-beta{args.grpo_beta:g}"
                kept = out / f"{arm}-{seed}-{setting}.json"
                if kept.exists():
                    result = json.loads(kept.read_text())
                else:
                    arm_batches = batches * PER_BATCH // SFT_BATCH if arm == "sft" else batches
                    result = gradient_arm(arm, seed, starts[seed], arm_batches, args)
                    kept.write_text(json.dumps(result))
            return dict(arm=arm, seed=seed, **result)

        runs = list(pool.map(one, [(a, s) for a in args.arms for s in args.seeds]))
        if args.plot:
            plot(runs, args.arms, args.plot)
    rows = []
    for arm in args.arms:
        mine = [r for r in runs if r["arm"] == arm]
        finals = [r["final"] for r in mine]
        gains = [r["final"] - r["initial"] for r in mine]
        row = dict(
            arm=arm,
            seeds=len(mine),
            initial_median=statistics.median(r["initial"] for r in mine),
            final_median=statistics.median(finals),
            final_min=min(finals),
            final_max=max(finals),
            final_sd=statistics.pstdev(finals),
            gain_median=statistics.median(gains),
            format_only_median=statistics.median(r["format_only"] for r in mine),
            train_s_median=statistics.median(r["train_s"] for r in mine),
        )
        rows.append(row)
        print(
            f"{arm:<11} held-out accuracy {row['initial_median']:.3f} -> {row['final_median']:.3f} "
            f"[{row['final_min']:.3f}, {row['final_max']:.3f}] sd {row['final_sd']:.3f}  "
            f"gain {row['gain_median']:+.3f}  "
            f"format-only {row['format_only_median']:.3f}  train {row['train_s_median']:.0f} s  "
            f"({len(mine)} seeds, budget {args.budget:,})",
            flush=True,
        )
    # median held-out accuracy over seeds at a few budgets of completions (sft counts examples: left out)
    generating = [arm for arm in args.arms if arm != "sft"]
    budgets = sorted({x for r in runs if r["arm"] in generating for x, _, _ in r["curve"]}) or [0]
    shown = sorted({budgets[len(budgets) // 5], budgets[len(budgets) // 2], budgets[-1]})
    for arm in generating:
        curves = [{x: a for x, _, a in r["curve"]} for r in runs if r["arm"] == arm]
        at = "  ".join(f"{b:,}: {statistics.median(c[b] for c in curves if b in c):.3f}" for b in shown)
        print(f"{arm:<11} at {at}", flush=True)
    print(json.dumps({"bench": "posttrain_lm", "rows": rows, "runs": runs}))


if __name__ == "__main__":
    main()
