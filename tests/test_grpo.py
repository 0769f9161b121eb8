"""The GRPO baseline's pieces, against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hpcars.algorithm.transformer import Transformer, TransformerConfig
from hpcars.baselines.grpo import answer_logprobs, group_advantages, grpo_loss, sample


def test_loss_of_a_two_sample_toy_equals_the_hand_computed_value():
    # one prompt, two answers of two tokens; the second answer's last token is masked out
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    old = torch.tensor([[-1.1, -2.0], [-0.2, -3.0]])
    ref = torch.tensor([[-1.0, -1.5], [-0.5, -2.0]])
    mask = torch.tensor([[True, True], [True, False]])
    rewards = torch.tensor([[1.0, 0.0]])
    adv = group_advantages(rewards)[0]
    # mean 0.5, std (Bessel) = sqrt(0.5): advantages ±0.5 / (0.70710678 + 1e-4)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert adv.tolist() == pytest.approx([a, -a])
    # answer 1: ratios e^0.1 (clipped to 1.2 from above: A > 0 takes min(1.10517·A, 1.10517·A)), 1
    # answer 2: ratio e^-0.3 = 0.7408 < 0.8; A < 0: min(0.7408·(-a), 0.8·(-a)) = -0.8a
    r1 = math.exp(0.1)
    answer1 = (r1 * a + 1.0 * a) / 2
    answer2 = -0.8 * a
    expected = -(answer1 + answer2) / 2
    assert grpo_loss(logp, old, adv, mask).item() == pytest.approx(expected, rel=1e-6)
    # with β = 0.1: k3 per token, exp(ref − logp) − (ref − logp) − 1
    k3 = lambda gap: math.exp(gap) - gap - 1  # noqa: E731
    kl1, kl2 = (k3(0.0) + k3(0.5)) / 2, k3(0.0)
    expected_kl = -((answer1 - 0.1 * kl1) + (answer2 - 0.1 * kl2)) / 2
    assert grpo_loss(logp, old, adv, mask, beta=0.1, ref_logp=ref).item() == pytest.approx(expected_kl, rel=1e-6)


def test_sampled_answers_are_masked_after_the_first_end_and_scored_by_one_pass():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab=5, d_model=16, heads=2, layers=1, d_ff=32, max_len=16)).eval()
    prompts = torch.randint(0, 5, (2, 4))
    answers, mask = sample(model, prompts, 3, 6, torch.Generator().manual_seed(1))
    assert answers.shape == mask.shape == (6, 6)
    for row, m in zip(answers.tolist(), mask.tolist(), strict=True):
        end = row.index(0) if 0 in row else len(row) - 1
        assert m == [True] * (end + 1) + [False] * (len(row) - end - 1)
    logp = answer_logprobs(model, prompts, answers)
    with torch.no_grad():  # the same log-probability step by step
        full = torch.cat((prompts.repeat_interleave(3, dim=0), answers), dim=1)
        direct = torch.log_softmax(model(full), dim=-1)[:, 3:-1].gather(-1, answers[..., None])[..., 0]
    assert torch.allclose(logp, direct, atol=1e-5)


def test_the_loss_is_trls_on_the_same_batch(tmp_path):
    """hpcars' GRPO loss (used where TRL cannot run: the built-in character model) against TRL's
    ``GRPOTrainer`` (``loss_type="grpo"``, the same clip and β) on one batch of a tiny Hugging Face
    model: the same per-token log-probabilities, ratios, advantages and mask give the same loss.
    Two of TRL's defaults are turned off to compare like with like: bf16 autocast (hpcars computes
    in float32) and ``use_bias_correction_kl`` (TRL weights its KL term by the ratio; hpcars follows
    the DeepSeekMath paper's k3 estimate as it is)."""
    trl = pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from hpcars.tasks.hf_lm import CausalLM, ModelFiles, load_model, load_tokenizer
    from tests.hf_models import save_tiny_lm

    path = save_tiny_lm(tmp_path / "m", ["12 + 30 = 42"] * 40)
    files = ModelFiles(str(path))
    tokenizer, model = load_tokenizer(files), load_model(files)
    config = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"),
        loss_type="grpo",
        beta=0.1,
        epsilon=0.2,
        num_generations=4,
        per_device_train_batch_size=4,
        max_completion_length=5,
        use_cpu=True,
        bf16=False,
        use_bias_correction_kl=False,
        report_to="none",
    )
    trainer = trl.GRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **_: [0.0] * len(completions),
        args=config,
        train_dataset=datasets.Dataset.from_dict({"prompt": ["12 + 30 ="] * 4}),
        processing_class=tokenizer,
    )
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(4, len(tokenizer), (2, 6), generator=generator)  # 2 prompts, 2 answers each
    answers = torch.randint(4, len(tokenizer), (4, 5), generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    trainer.model.eval()
    with torch.no_grad():
        logp = answer_logprobs(CausalLM(trainer.model, 0), prompts, answers)
    old = logp + 0.3 * torch.randn(logp.shape, generator=generator)  # ratios off 1: the clip matters
    ref = logp + 0.5 * torch.randn(logp.shape, generator=generator)
    advantages = torch.tensor([1.2, -0.7, 0.4, -1.1])
    rows = prompts.repeat_interleave(2, dim=0)
    inputs = {
        "prompt_ids": rows,
        "prompt_mask": torch.ones_like(rows),
        "completion_ids": answers,
        "completion_mask": mask,
        "advantages": advantages,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    with torch.no_grad():
        theirs = trainer._compute_loss(trainer.model, inputs)
        ours = grpo_loss(logp, old, advantages, mask.bool(), clip=0.2, beta=0.1, ref_logp=ref)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)
