"""GRPO: group-relative policy optimisation, the policy-gradient baseline for verifier rewards.

Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300). For each prompt, G completions are sampled
from the current policy at temperature 1; each one's advantage is its reward's z-score within
its group, A_i = (r_i − mean r) / (std r + ε) (no value network); every answer token is pushed
by the clipped PPO surrogate min(ρ A, clip(ρ, 1 − ε_c, 1 + ε_c) A), ρ = π_θ / π_old, minus β
times the k3 estimate of KL(π_θ ‖ π_ref) (exp(ref − logp) − (ref − logp) − 1), averaged over
each answer's tokens and then over answers. Qiu et al. 2025 (arXiv 2509.24372) compare it with
evolution strategies on Countdown; ``bench/posttrain_lm.py`` does so here.

Pure functions over tensors — ``sample``, ``answer_logprobs``, ``group_advantages`` and
``grpo_loss`` — so the loss can be checked by hand (``tests/test_grpo.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from hpcars.algorithm.transformer import KVCache

END = 0  # the token that ends an answer (``hpcars.tasks.verifier.VOCAB[0]`` is the newline)


def sample(
    module: nn.Module,
    prompts: torch.Tensor,
    group: int,
    steps: int,
    generator: torch.Generator,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``group`` sampled answers per prompt: ids [K·group, steps] (prompt-major) and the mask of
    their tokens up to and including the first END."""
    rows = prompts.repeat_interleave(group, dim=0)
    cache, out = KVCache(), []
    with torch.no_grad():
        logits = module(rows, cache)[:, -1]
        for step in range(steps):
            probs = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
            out.append(token)
            if step + 1 < steps:
                logits = module(token[:, None], cache)[:, -1]
    answers = torch.stack(out, dim=1)
    ended = (answers == END).cumsum(dim=1)
    mask = (ended == 0) | ((ended == 1) & (answers == END))  # up to the first END, included
    return answers, mask


def answer_logprobs(module: nn.Module, prompts: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """log π(answer token | prompt, earlier answer tokens): [rows, steps] (one teacher-forced pass)."""
    rows = prompts.repeat_interleave(answers.shape[0] // prompts.shape[0], dim=0)
    sequence = torch.cat((rows, answers), dim=1)
    logits = module(sequence[:, :-1])[:, rows.shape[1] - 1 :]
    return torch.log_softmax(logits, dim=-1).gather(-1, answers[..., None])[..., 0]


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """[K, G] rewards -> z-scores within each group (standard deviation with Bessel's correction)."""
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (rewards.std(dim=1, keepdim=True) + eps)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    beta: float = 0.0,
    ref_logp: torch.Tensor | None = None,
) -> torch.Tensor:
    """The GRPO loss (to minimise) of answers [n, T] with per-answer advantages [n]."""
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    per_token = torch.minimum(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a)
    if beta:
        assert ref_logp is not None, "a KL penalty needs the reference policy's log-probabilities"
        gap = ref_logp - logp
        per_token = per_token - beta * (torch.exp(gap) - gap - 1)
    mask = mask.to(logp.dtype)
    per_answer = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
    return -per_answer.mean()
