"""Tiny models written the way others write them, for the low-rank exactness tests.

Hugging Face configs (Llama and Qwen2, with and without tied embeddings; GPT-2, whose
``Conv1D`` holds its weight transposed, whose embeddings are tied and which builds its own
position ids) and three hand-written shapes common in GPT code: a learned position table as
a bare ``nn.Parameter`` beside child layers, a LayerNorm over two dimensions, and a tied
head written as ``F.linear(x, self.embed.weight)`` (which no hook can see: refused).
Every model maps token ids [n, T] to logits [n, T, VOCAB]."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, WIDTH, LENGTH = 40, 16, 12


class LogitsOf(nn.Module):
    """A Hugging Face causal LM as tokens -> logits (no cache)."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=tokens, use_cache=False).logits


def _hf(name: str, tied: bool) -> nn.Module:
    import transformers

    common = dict(vocab_size=VOCAB, tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if name == "gpt2":
        config = transformers.GPT2Config(n_positions=32, n_embd=WIDTH, n_layer=2, n_head=2, **common)
        return LogitsOf(transformers.GPT2LMHeadModel(config))
    shapes = dict(
        hidden_size=WIDTH,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    if name == "llama":
        return LogitsOf(transformers.LlamaForCausalLM(transformers.LlamaConfig(**shapes, **common)))
    return LogitsOf(transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**shapes, **common)))


class BarePosition(nn.Module):
    """GPT-style: the position table is a bare Parameter of the root, beside its child layers."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(0.3 * torch.randn(32, WIDTH))
        self.mix = nn.Linear(WIDTH, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tokens(tokens) + self.position[: tokens.shape[1]]
        return self.head(self.norm(torch.tanh(self.mix(x))))


class TwoDimNorm(nn.Module):
    """A LayerNorm over the last two dimensions (sequence and width): its weight is a matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.norm = nn.LayerNorm((LENGTH, WIDTH))
        self.head = nn.Linear(WIDTH, VOCAB)
        with torch.no_grad():
            self.norm.weight.add_(0.3 * torch.randn_like(self.norm.weight))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.tokens(tokens)))


class HandTied(nn.Module):
    """The tied head written by hand: the root reads its child's weight (refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.mix = nn.Linear(WIDTH, WIDTH)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.tanh(self.mix(self.embed(tokens))), self.embed.weight)


#: name -> builder (deterministic given torch's global seed)
MODELS: dict[str, Callable[[], nn.Module]] = {
    "llama-tied": lambda: _hf("llama", True),
    "llama": lambda: _hf("llama", False),
    "qwen2-tied": lambda: _hf("qwen2", True),
    "qwen2": lambda: _hf("qwen2", False),
    "gpt2": lambda: _hf("gpt2", True),
    "bare-position": BarePosition,
    "two-dim-norm": TwoDimNorm,
}
EXACT = tuple(MODELS)


def build(name: str, seed: int = 0) -> nn.Module:
    """Model ``name`` with weights from ``seed`` (large enough that branches differ), in eval mode."""
    torch.manual_seed(seed)
    model = HandTied() if name == "hand-tied" else MODELS[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tokens(rows: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, LENGTH), generator=torch.Generator().manual_seed(seed))


def language_problem(name: str, seed: int = 0):  # -> hpcars.SupervisedProblem
    """Next-token prediction on random sequences: a supervised plug-in whose model is ``name``."""
    from hpcars import SupervisedProblem

    data = tokens(64, seed=seed + 7)

    def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), targets[:, 1:], reduction="none").mean(dim=1)

    return SupervisedProblem(model=build(name, seed), train=(data, data), loss=next_token_loss, batch_size=4)


def hand_tied_problem():  # a plug-in factory: --task tests.models_for_tests:hand_tied_problem
    problem = language_problem("bare-position")
    from dataclasses import replace

    return replace(problem, model=build("hand-tied"))


def qwen2_tied_problem():  # a plug-in factory: --task tests.models_for_tests:qwen2_tied_problem
    return language_problem("qwen2-tied")
