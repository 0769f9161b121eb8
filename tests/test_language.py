"""Language tasks: reasoning-gym's prompts and judges, fitness shaping, sampled answers with
shared noise, chat templates and GGUF paths — each against its definition — and a
reasoning-gym run on a tiny Hugging Face model with every recipe option on, the same bits on
1 and 3 ranks and across a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hpcars.algorithm.ars import SKIP_NONFINITE, SKIP_ZERO_STD, ARSHyper, ars_step
from hpcars.algorithm.decoding import Sampled, gumbel
from hpcars.algorithm.fitness import shaped_step
from hpcars.errors import ConfigError
from tests.conftest import run_train

reasoning_gym = pytest.importorskip("reasoning_gym")
pytest.importorskip("transformers")

CHAIN = "min_terms=2,max_terms=2,min_digits=2,max_digits=2"
HYPER = ARSHyper(step_size=0.5, noise_std=0.1, directions=3, top_directions=3)


# -- fitness shaping ----------------------------------------------------------------------------
def test_ars_fitness_is_algorithm_2_exactly():
    r = np.array([3.0, 1.0, -2.0, 0.5, 4.0, 4.5])
    got, ref = shaped_step("ars", r, HYPER), ars_step(r[0::2], r[1::2], HYPER)
    assert np.array_equal(got.kept, ref.kept) and np.array_equal(got.weights, ref.weights)


def test_zscore_is_qius_update_over_the_antithetic_population():
    r = np.array([3.0, 1.0, -2.0, 0.5, 4.0, 4.5])
    z = (r - r.mean()) / (r.std() + 1e-8)
    step = shaped_step("zscore", r, HYPER)
    # (α/2N) Σ_n z_n ε_n with ε_{2k} = +δ_k, ε_{2k+1} = −δ_k
    np.testing.assert_allclose(step.weights, 0.5 * (z[0::2] - z[1::2]) / 6)
    assert step.kept.tolist() == [0, 1, 2] and step.skipped == ""
    assert shaped_step("zscore", np.ones(6), HYPER).skipped == SKIP_ZERO_STD
    assert shaped_step("zscore", np.array([1.0, np.nan, 0, 0, 0, 0]), HYPER).skipped == SKIP_NONFINITE


def test_group_zscore_scores_each_prompt_apart():
    groups = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])  # [2N, K]
    z = (groups - groups.mean(axis=0)) / (groups.std(axis=0) + 1e-8)
    fitness = z.mean(axis=1)
    step = shaped_step("group-zscore", groups.mean(axis=1), HYPER, groups)
    np.testing.assert_allclose(step.weights, 0.5 * (fitness[0::2] - fitness[1::2]) / 6)
    # a prompt every branch answers alike tells them nothing: it adds nothing to any fitness
    same = np.c_[groups, np.ones(6)]
    np.testing.assert_allclose(
        shaped_step("group-zscore", same.mean(axis=1), HYPER, same).weights * 3 / 2, step.weights
    )


# -- sampling with shared noise -------------------------------------------------------------------
def test_sampling_draws_from_the_softmax_and_shares_its_noise_between_branches():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    counts = torch.zeros(4)
    for step in range(4000):
        counts[Sampled(seed=1, iteration=0, prompts=1, temperature=1.0)(logits[None], step)] += 1
    np.testing.assert_allclose(counts / 4000, torch.softmax(logits, 0), atol=0.03)
    # rows are branch-major: prompt k's rows of every branch see the same noise, other prompts other noise
    rows = torch.randn(3, 50).repeat(2, 1)  # 2 branches x 3 prompts, the same logits per prompt
    picked = Sampled(seed=1, iteration=4, prompts=3, temperature=1.0)(rows, 0)
    assert torch.equal(picked[:3], picked[3:])
    noise = gumbel(1, 4, 3, 0, 50, torch.device("cpu"))
    assert not torch.equal(noise[0], noise[1]) and torch.equal(noise, gumbel(1, 4, 3, 0, 50, torch.device("cpu")))


# -- reasoning-gym: splits, answers, judges --------------------------------------------------------
def test_splits_are_disjoint_and_fixed():
    from hpcars.tasks.reasoning_gym import ReasoningGymPrompts, parse_config

    source = ReasoningGymPrompts("chain_sum", parse_config(CHAIN))
    test, validation, train = (
        {i["question"] for i in source.held_out("test", 300)},
        {i["question"] for i in source.held_out("validation", 300)},
        {i["question"] for i in source.train()},
    )
    assert len(test) > 100 and len(validation) > 100 and len(train) > 1000  # distinct questions of 300, 300, 4000 items
    assert not (test & validation or test & train or validation & train)
    again = ReasoningGymPrompts("chain_sum", parse_config(CHAIN))
    assert [i["question"] for i in again.held_out("test", 50)] == [i["question"] for i in source.held_out("test", 50)]


@pytest.mark.parametrize(
    ("completion", "numeric", "answer", "well_formed"),
    [
        ("The final answer is 15.", True, "15", True),
        ("3 + 4 = 7, so the answer is 1,007", True, "1007", True),
        ("It is -12.5 or maybe 3", True, "3", True),
        ("<answer>42</answer> and then 7", True, "42", True),
        ("<answer> a b </answer><answer>c</answer>", False, "c", True),
        ("no number here", True, None, False),
        ("\n  first line  \nsecond", False, "first line", True),
        ("", False, None, False),
    ],
)
def test_the_answer_rule(completion, numeric, answer, well_formed):
    from hpcars.tasks.reasoning_gym import extract

    assert extract(completion, numeric) == (answer, well_formed)


def test_the_judge_is_the_datasets_own_score():
    from hpcars.tasks.reasoning_gym import ReasoningGymPrompts, parse_config

    source = ReasoningGymPrompts("chain_sum", parse_config(CHAIN))
    item = source.held_out("test", 1)[0]
    assert source.judge(f"The answer is {item['answer']}.", item) == (1.0, True)
    assert source.judge("The answer is 1000.", item) == (0.0, True)
    assert source.judge("I cannot say.", item) == (0.0, False)


def test_countdowns_verifier_agrees_with_reasoning_gyms_scoring():
    """On a sample of answers to reasoning-gym's own Countdown puzzles: right ones, and wrong ones
    of every kind the verifier knows (a number left out, used twice, not given, a wrong value,
    malformed). One difference, by design: reasoning-gym (sympy) reads a unary minus, the
    verifier's grammar (binary + − × ÷ over the given numbers) does not — such answers are
    malformed here, right there; the sample keeps to the shared grammar and checks that one apart."""
    import re

    from hpcars.tasks.countdown import verify

    unary = re.compile(r"(^|[(+\-*/])\s*-")
    data = reasoning_gym.create_dataset("countdown", size=40, seed=3)
    checked = 0
    for entry in data:
        numbers, target, right = entry["metadata"]["numbers"], entry["metadata"]["target"], entry["answer"]
        if unary.search(right):
            assert data.score_answer(right, entry) == 1.0 and not verify(right, tuple(numbers), target).well_formed
            continue
        first, extra = str(numbers[0]), str(max(numbers) + 1)
        answers = [
            right,
            f"{right}+{first}",  # a number used twice
            "+".join(str(n) for n in numbers[1:]),  # one left out
            f"({right})+{extra}-{extra}",  # the same value with a number not given, twice
            "+".join(str(n) for n in numbers),  # every number once, most likely the wrong value
            right + "(",  # malformed
        ]
        for answer in answers:
            ours = verify(answer, tuple(numbers), target).correct
            theirs = data.score_answer(answer, entry) == 1.0
            assert ours == theirs, (answer, numbers, target, ours, theirs)
            checked += 1
    assert checked >= 120  # at least 20 puzzles in the shared grammar


# -- chat templates and model files --------------------------------------------------------------
def test_chat_template_auto_wraps_the_prompt_and_none_leaves_it(tmp_path):
    from hpcars.tasks.hf_lm import ModelFiles, TokenizerCodec, load_tokenizer
    from tests.hf_models import CHATML, save_tiny_lm

    path = save_tiny_lm(tmp_path / "chat", ["What is 2 + 3?"] * 20, chat_template=CHATML)
    tokenizer = load_tokenizer(ModelFiles(str(path)))
    chat, plain = TokenizerCodec(tokenizer, "auto"), TokenizerCodec(tokenizer, "none")
    text = tokenizer.decode(chat.prompts(["What is 2 + 3?"])[0])
    assert text == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.decode(plain.prompts(["What is 2 + 3?"])[0]) == "What is 2 + 3?"


def test_hf_model_names_a_directory_a_gguf_file_or_a_directory_holding_one(tmp_path):
    from hpcars.tasks.hf_lm import ModelFiles, locate

    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text("{}")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.gguf").write_bytes(b"GGUF")
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"GGUF")
    assert locate(str(tmp_path / "saved")) == ModelFiles(str(tmp_path / "saved"))
    assert locate(str(tmp_path / "one")) == ModelFiles(str(tmp_path / "one"), "m.gguf")
    assert locate(str(tmp_path / "one" / "m.gguf")) == ModelFiles(str(tmp_path / "one"), "m.gguf")
    with pytest.raises(ConfigError, match=r"holds 2 GGUF files \(a.gguf, b.gguf\): name one"):
        locate(str(tmp_path / "two"))
    with pytest.raises(ConfigError, match="is not a Hugging Face model directory"):
        locate(str(tmp_path))


# -- a whole run -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from hpcars.tasks.reasoning_gym import ReasoningGymPrompts, parse_config
    from tests.hf_models import CHATML, save_tiny_lm

    source = ReasoningGymPrompts("chain_sum", parse_config(CHAIN))
    texts = [f"{i['question']} The answer is {i['answer']}." for i in source.train()[:300]]
    return save_tiny_lm(tmp_path_factory.mktemp("rg") / "tiny-chat", texts, tied=True, chat_template=CHATML)


RECIPE = ["--perturbation", "lowrank", "--directions", "2", "--prompts", "3", "--prompt-pool", "5"]
RECIPE += ["--fitness", "group-zscore", "--temperature", "1.0", "--max-new-tokens", "6", "--eval-prompts", "50"]
RECIPE += ["--eval-every", "2", "--checkpoint-every", "1", "--noise-std", "0.05", "--step-size", "0.05"]


def test_a_reasoning_gym_run_is_world_size_invariant_and_resumes_bitwise(chat_model, tmp_path):
    args = ["--task", "reasoning-gym:chain_sum", "--task-config", CHAIN, "--hf-model", str(chat_model), *RECIPE]
    summaries = {}
    for ranks in (1, 3):
        run = tmp_path / f"r{ranks}"
        done = run_train([*args, "--iterations", "2", "--run-dir", str(run)], ranks)
        assert done.returncode == 0, done.stderr
        summaries[ranks] = json.loads((run / "summary.json").read_text())
    assert summaries[1]["params_sha256"] == summaries[3]["params_sha256"]
    assert summaries[1]["final"] == summaries[3]["final"]
    provenance = summaries[1]["provenance"]
    assert provenance["model_file"] == str(chat_model) and len(provenance["model_sha256"]) == 64
    run = tmp_path / "resumed"
    assert run_train([*args, "--iterations", "1", "--run-dir", str(run)]).returncode == 0
    done = run_train(["--resume", str(run), "--iterations", "2"])
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "summary.json").read_text())["params_sha256"] == summaries[1]["params_sha256"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "reasoning-gym:chain_sum"], "--task: reasoning-gym:chain_sum needs --hf-model"),
        (["--task", "reasoning-gym:chain_summ", "--hf-model", "MODEL"], "--task: reasoning-gym has no dataset"),
        (["--task-config", "min_digits=2"], "--task-config: is for --task reasoning-gym:NAME"),
        (["--task", "countdown", "--fitness", "zscore", "--top-directions", "3"], "--top-directions: is ARS's b"),
        (["--fitness", "group-zscore"], "--fitness: group-zscore needs a language task"),
        (["--task", "countdown", "--temperature", "-1"], "--temperature: must be a finite number >= 0"),
        (["--task", "countdown", "--chat-template", "yes"], "--chat-template: must be one of auto, none (got 'yes')"),
    ],
)
def test_bad_language_options_are_refused_in_one_line(chat_model, tmp_path, capsys, args, message):
    from tests.conftest import train_in_process

    args = [a.replace("MODEL", str(chat_model)) for a in args]
    status, lines = train_in_process([*args, "--run-dir", str(tmp_path / "r")], capsys)
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"hpcars.train: error: {message}"), lines
