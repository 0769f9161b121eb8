"""``--task countdown --hf-model DIR``: a Hugging Face causal LM from a local directory.

The directory is made here as a user's would be: a tiny random Qwen2 config and a BPE tokenizer
trained on a few puzzles, written with ``save_pretrained`` (nothing is downloaded).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.generate import completions
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import LowRank
from hpcars.algorithm.transformer import KVCache
from tests.conftest import run_train

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from hpcars.tasks.verifier import train_pool
    from tests.hf_models import save_tiny_lm

    texts = [p.prompt + p.solution + "\n" for p in train_pool()[:300]]
    return save_tiny_lm(tmp_path_factory.mktemp("hf") / "tiny-qwen2", texts)


def _task(model_dir, **options):
    from hpcars.config import TrainConfig
    from hpcars.tasks import make_task

    return make_task(TrainConfig(task="countdown", hf_model=str(model_dir), **options))


def test_prompts_are_token_ids_and_answers_end_at_a_newline_or_eos(model_dir):
    task = _task(model_dir)
    tokenizer = task.codec.tokenizer
    batch = task.pool[:10]
    ids = task.codec.prompts([p.prompt for p in batch])
    assert ids.tolist() == [tokenizer.encode(p.prompt, add_special_tokens=False) for p in batch]
    answer = task.codec.answer(tokenizer.encode("(25-13)*24\n3+4", add_special_tokens=False))
    assert answer == "(25-13)*24\n3+4"  # the whole answer; Countdown's verifier reads its first line
    eos = tokenizer.eos_token_id
    assert task.codec.answer([*tokenizer.encode("3+4", add_special_tokens=False), eos, 5, 6]) == "3+4"


def test_decoding_left_padded_prompts_with_the_cache_equals_each_prompt_alone_without_it(model_dir):
    task = _task(model_dir)
    module = task.build_model()
    full = task.codec.prompts([p.prompt for p in task.pool[:6]])
    rows = [full[i, i:] for i in range(6)]  # ragged prompts (a tokenizer that packs digits makes them)
    width = max(len(r) for r in rows)
    pad = task.codec.pad_id
    prompts = torch.stack([torch.cat((torch.full((width - len(r),), pad), r)) for r in rows])
    with torch.no_grad():
        cache = KVCache()
        token = module(prompts, cache)[:, -1].argmax(-1)
        batched = [token]
        for _ in range(5):
            token = module(token[:, None], cache)[:, -1].argmax(-1)
            batched.append(token)
        got = torch.stack(batched, dim=1)
        for i, row in enumerate(rows):  # unpadded, the whole sequence recomputed at every step
            ids = row[None]
            for step in range(6):
                token = module(ids)[:, -1].argmax(-1)
                assert token.item() == got[i, step].item(), (i, step)
                ids = torch.cat((ids, token[:, None]), dim=1)
    assert len({tuple(r) for r in got.tolist()}) > 1  # the answers differ: the test can tell rows apart


def test_batched_low_rank_branches_answer_as_each_branch_alone(model_dir):
    task = _task(model_dir)
    model = BatchedModel(task.build_model(), torch.device("cpu"))
    spec = ParamSpec.of(model.module)
    kind = LowRank(spec, 2)
    directions = NoiseSource(5).directions(0, 0, range(4), kind.noise_size)
    scale = torch.tensor([0.3, -0.3, 0.3, -0.3])
    bases = spec.flatten(model.module)[None]
    branches = kind.branches(bases, torch.zeros(4, dtype=torch.long), scale, directions, torch.arange(4))
    prompts = task.codec.prompts([p.prompt for p in task.pool[:5]])
    got = completions(model, branches, prompts, steps=6)
    alone = completions(BatchedModel(task.build_model(), torch.device("cpu")), branches.dense(), prompts, steps=6)
    assert torch.equal(got, alone)
    assert not torch.equal(got[0], got[1])


RUN = ["--task", "countdown", "--perturbation", "lowrank", "--directions", "2", "--prompts", "4"]
RUN += ["--eval-prompts", "50", "--eval-every", "2", "--noise-std", "0.05", "--step-size", "0.05"]


def test_a_hf_countdown_run_is_world_size_invariant(model_dir, tmp_path):
    shas = set()
    for ranks in (1, 2):
        run = tmp_path / f"r{ranks}"
        done = run_train([*RUN, "--hf-model", str(model_dir), "--iterations", "2", "--run-dir", str(run)], ranks)
        assert done.returncode == 0, done.stderr
        summary = json.loads((run / "summary.json").read_text())
        shas.add(summary["params_sha256"])
        assert 0.0 <= summary["final"]["eval_accuracy"] <= 1.0
    assert len(shas) == 1


def test_a_directory_without_a_model_is_refused_in_one_line(tmp_path):
    done = run_train([*RUN, "--hf-model", str(tmp_path), "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"hpcars.train: error: --hf-model: {tmp_path} is not a Hugging Face model directory (no config.json in it), "
        "a GGUF file or a directory holding one"
    )
    done = run_train(["--task", "digits", "--hf-model", str(tmp_path), "--run-dir", str(tmp_path / "d")])
    assert done.returncode == 2 and "--hf-model: is for --task countdown" in done.stderr


@pytest.mark.parametrize(
    ("broken", "what"),
    [("config.json", "tokenizer"), ("model.safetensors", "model")],  # the tokenizer reads config.json first
)
def test_a_directory_with_a_broken_file_is_refused_in_one_line(model_dir, tmp_path, broken, what):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / broken).write_bytes((copy / broken).read_bytes()[:40])  # cut short: not JSON, not safetensors
    done = run_train([*RUN, "--hf-model", str(copy), "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"hpcars.train: error: --hf-model: {copy}: cannot load its {what} ("
    ), lines
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("checkpoints/*"))
