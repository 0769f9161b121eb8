"""Post-training a pretrained transformer on a verifier reward: ES (ARS) against GRPO.

    python bench/posttrain_lm.py [--seeds 0 1 2] [--budget 48000] [--arms es-lowrank es-dense grpo8 grpo30 sft]
                                 [--jobs 2] [--smoke]

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
seeds), its gain over the pretrained model, the share of well-formed but wrong answers (format
without arithmetic: reward hacking), completions generated, and wall clock (one core each).
Last line: one JSON object. ``--smoke``: one seed, a tiny pretraining and one batch per arm.
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

ROOT = Path(__file__).resolve().parents[1]
PER_BATCH = 480  # completions an arm generates per batch (ES: 30 branches × 16 prompts)
EVAL_EVERY = 10  # batches between held-out evaluations
GRPO_LR = 1e-4
SFT_LR = 1e-3
SMOKE = dict(seeds=[0], budget=PER_BATCH, pretrain_steps=10, eval_prompts=50)


def pretrain(seed: int, out: Path, steps: int, eval_prompts: int) -> Path:
    path = out / f"pretrained-{seed}.pt"
    if not path.exists():
        command = [sys.executable, str(ROOT / "examples" / "countdown_pretrain.py"), "--seed", str(seed)]
        command += ["--out", str(path), "--max-steps", str(steps), "--eval-prompts", str(eval_prompts)]
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return path


def es_arm(kind: str, seed: int, start: Path, batches: int, out: Path, eval_prompts: int) -> dict:
    run_dir = out / f"es-{kind}-{seed}"
    command = [sys.executable, "-m", "hpcars.train", "--preset", "countdown", "--init-from", str(start)]
    command += ["--perturbation", kind, "--seed", str(seed), "--iterations", str(batches)]
    command += ["--eval-every", str(EVAL_EVERY), "--eval-prompts", str(eval_prompts), "--run-dir", str(run_dir)]
    t = time.perf_counter()
    subprocess.run([*command, "--quiet"], check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv") as f:
        curve = [(int(r["iteration"]) * PER_BATCH, float(r["score"])) for r in csv.DictReader(f) if r["score"]]
    initial = summary["initial"]
    return dict(
        curve=[(0, initial["score"]), *curve],
        final=summary["final"]["eval_accuracy"],
        format_only=summary["final"]["eval_format_only"],
        initial=initial["eval_accuracy"],
        wall_s=wall,
    )


def gradient_arm(arm: str, seed: int, start: Path, batches: int, eval_prompts: int, beta: float) -> dict:
    """GRPO (``grpo8``, ``grpo30``) or continued teacher forcing (``sft``), in this process."""
    import torch
    import torch.nn.functional as F

    from hpcars.algorithm.branches import BatchedModel
    from hpcars.algorithm.noise import stream_key
    from hpcars.baselines.grpo import answer_logprobs, group_advantages, grpo_loss, sample
    from hpcars.tasks.verifier import ANSWER_STEPS, CountdownTask, build_model, prompt_tokens, scores, teacher_batch

    torch.set_num_threads(1)
    task = CountdownTask(seed, eval_prompts=eval_prompts)
    model = build_model(seed)
    model.load_state_dict(torch.load(start, weights_only=True))
    reference = build_model(seed)
    reference.load_state_dict(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=SFT_LR if arm == "sft" else GRPO_LR)
    g = torch.Generator().manual_seed(seed)

    def evaluate() -> tuple[float, float]:
        model.eval()
        batched = BatchedModel(model, torch.device("cpu"))
        rows = task.evaluate_units(batched, batched.spec.flatten(model), range(task.eval_units), 0)
        model.train()
        return float(rows[:, 0].sum() / rows[:, 2].sum()), float(rows[:, 1].sum() / rows[:, 2].sum())

    initial, _ = evaluate()
    curve, wall = [(0, initial)], 0.0
    group = 30 if arm == "grpo30" else 8
    for batch in range(1, batches + 1):
        t = time.perf_counter()
        if arm == "sft":
            x, y = teacher_batch(task, torch.randint(len(task.pool), (64,), generator=g))
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
        wall += time.perf_counter() - t
        if batch % EVAL_EVERY == 0 or batch == batches:
            curve.append((batch * (64 if arm == "sft" else PER_BATCH), evaluate()[0]))
    final, format_only = evaluate()
    return dict(curve=curve, final=final, format_only=format_only, initial=initial, wall_s=wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (pretraining and post-training)")
    parser.add_argument("--budget", type=int, default=48_000, help="completions (sft: examples) per arm")
    parser.add_argument("--arms", nargs="+", default=["es-lowrank", "es-dense", "grpo8", "grpo30", "sft"])
    parser.add_argument("--jobs", type=int, default=2, help="arms run at a time (one core each)")
    parser.add_argument("--pretrain-steps", type=int, default=6000, help="teacher-forcing steps at most")
    parser.add_argument("--eval-prompts", type=int, default=500, help="held-out puzzles per evaluation")
    parser.add_argument("--grpo-beta", type=float, default=0.0, help="GRPO's KL coefficient β")
    parser.add_argument("--out", default="", help="keep pretrained models and runs here (default: a temporary dir)")
    parser.add_argument("--smoke", action="store_true", help=f"seconds of run time: {SMOKE}")
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
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
                result = es_arm(arm[3:], seed, starts[seed], batches, out, args.eval_prompts)
            else:
                sft_batches = batches * PER_BATCH // 64 if arm == "sft" else batches
                result = gradient_arm(arm, seed, starts[seed], sft_batches, args.eval_prompts, args.grpo_beta)
            return dict(arm=arm, seed=seed, **result)

        runs = list(pool.map(one, [(a, s) for a in args.arms for s in args.seeds]))
    rows = []
    for arm in args.arms:
        mine = [r for r in runs if r["arm"] == arm]
        finals = [r["final"] for r in mine]
        gains = [r["final"] - r["initial"] for r in mine]
        row = dict(
            arm=arm,
            seeds=len(mine),
            final_median=statistics.median(finals),
            final_min=min(finals),
            final_max=max(finals),
            gain_median=statistics.median(gains),
            format_only_median=statistics.median(r["format_only"] for r in mine),
            wall_s_median=statistics.median(r["wall_s"] for r in mine),
        )
        rows.append(row)
        print(
            f"{arm:<11} held-out accuracy {row['final_median']:.3f} [{row['final_min']:.3f}, {row['final_max']:.3f}] "
            f"gain {row['gain_median']:+.3f}  format-only {row['format_only_median']:.3f}  "
            f"wall {row['wall_s_median']:.0f} s  ({len(mine)} seeds, budget {args.budget:,})",
            flush=True,
        )
    print(json.dumps({"bench": "posttrain_lm", "rows": rows, "runs": runs}))


if __name__ == "__main__":
    main()
