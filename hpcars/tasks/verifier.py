"""Countdown for a language model: ``--task countdown``.

The model reads a Countdown prompt (``hpcars.tasks.countdown``) and answers; the verifier's
verdict is the reward (1 per right answer, 0 otherwise; an expression over the given numbers
counts as well formed, right or not). Everything else — prompts per iteration, decoding,
rewards, the held-out accuracy — is the language task's (``hpcars.tasks.language``); here are
the puzzles as a ``PromptSource`` and the built-in model with its codec.

The model is the built-in character-level transformer (``MODEL``, 1.2·10⁶ parameters) read
character by character (``CharCodec``); start from a pretrained one with ``--init-from``
(``examples/countdown_pretrain.py`` makes one). Or a Hugging Face causal LM, ``--hf-model``,
with its own tokenizer (``hpcars.tasks.hf_lm``). The training puzzles are a pool of
``TRAIN_POOL`` drawn from ``DATA_SEED`` (the same for every run seed); the held-out ones are
the first ``--eval-prompts`` of the held-out split (``test``), or from ``VALIDATION_START`` on
(``validation``: for tuning, and what pretraining validates on).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.noise import stream_key
from hpcars.algorithm.transformer import Transformer, TransformerConfig
from hpcars.tasks.countdown import HELDOUT, TRAIN, Puzzle, puzzles, verify
from hpcars.tasks.language import LanguageOptions, LanguageTask

VOCAB = "\n 0123456789+-*/(),:abegmnrstu"  # newline ends an answer
PROMPT_LENGTH = len("numbers 25 25 25, target 99:")  # every prompt: numbers and target right-aligned
ANSWER_STEPS = 12  # the longest answer ("(25-13)*24" and its newline) fits
MODEL = TransformerConfig(vocab=len(VOCAB), d_model=160, heads=4, layers=4, d_ff=640, max_len=48)
DATA_SEED = 2026  # the puzzle pool and the held-out set: the same for every run seed
TRAIN_POOL = 20_000  # training puzzles the iterations draw from
VALIDATION_START = 2_000  # held-out puzzles from here on validate pretraining; evaluations use the first ones


def encode(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text]


def decode(ids: Sequence[int]) -> str:
    """Token ids -> text, up to (not including) the first newline."""
    text = "".join(VOCAB[i] for i in ids)
    return text.split("\n", 1)[0]


def prompt_tokens(batch: Sequence[Puzzle], device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.tensor([encode(p.prompt) for p in batch], dtype=torch.long, device=device)


class CharCodec:
    """The built-in model's characters (``VOCAB``): every prompt is ``PROMPT_LENGTH`` ids."""

    end_ids: tuple[int, ...] = (0,)  # the newline

    def prompts(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.tensor([encode(t) for t in texts], dtype=torch.long, device=device)

    def answer(self, ids: Sequence[int]) -> str:
        return decode(ids)


@functools.lru_cache(maxsize=2)
def train_pool(size: int = TRAIN_POOL) -> tuple[Puzzle, ...]:
    return tuple(puzzles(DATA_SEED, TRAIN, size))


@functools.lru_cache(maxsize=4)
def held_out_set(size: int, start: int = 0) -> tuple[Puzzle, ...]:
    return tuple(puzzles(DATA_SEED, HELDOUT, size, start))


class CountdownPrompts:
    """Countdown's puzzles as a ``PromptSource``: the verifier judges the answer's first line."""

    name = "countdown"
    answer_steps = ANSWER_STEPS

    def train(self) -> Sequence[Puzzle]:
        return train_pool()

    def held_out(self, split: str, count: int) -> Sequence[Puzzle]:
        return held_out_set(count, VALIDATION_START if split == "validation" else 0)

    def text(self, item: Puzzle) -> str:
        return item.prompt

    def judge(self, answer: str, item: Puzzle) -> tuple[float, bool]:
        verdict = verify(answer, item.numbers, item.target)
        return float(verdict.correct), verdict.well_formed


def build_model(seed: int) -> nn.Module:
    """The task's transformer, initialised from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_key(seed, 0x696E6974, 0, 0) & (2**62 - 1))  # "init"
        return Transformer(MODEL).eval()


class CountdownTask(LanguageTask):
    """``--task countdown`` on the built-in model (or a ``LanguageTask`` given its codec and model)."""

    def __init__(
        self,
        seed: int,
        prompts: int = 16,
        eval_prompts: int = 500,
        format_reward: float = 0.0,
        eval_split: str = "test",
        **options: object,
    ) -> None:
        settings = LanguageOptions(seed, prompts, eval_prompts, eval_split, format_reward, **options)  # type: ignore[arg-type]
        super().__init__("countdown", CountdownPrompts(), CharCodec(), lambda: build_model(seed), settings)


def scores(answers: torch.Tensor, batch: Sequence[Puzzle]) -> np.ndarray:
    """[..., K, steps] answer ids of the built-in model -> [..., K, 2]: right, and well formed but wrong."""
    flat = answers.reshape(-1, len(batch), answers.shape[-1]).cpu().tolist()
    out = np.zeros((len(flat), len(batch), 2))
    for r, row in enumerate(flat):
        for i, (ids, puzzle) in enumerate(zip(row, batch, strict=True)):
            verdict = verify(decode(ids), puzzle.numbers, puzzle.target)
            out[r, i] = (verdict.correct, verdict.well_formed and not verdict.correct)
    return out.reshape(*answers.shape[:-2], len(batch), 2)


def teacher_batch(task: LanguageTask, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of teacher forcing for the training puzzles ``picks``: the prompt and the
    solution, the loss on the solution's characters and its newline only (other targets are -100)."""
    rows, targets = [], []
    for i in picks.tolist():
        puzzle = task.pool[i]
        prompt, answer = encode(puzzle.prompt), encode(puzzle.solution + "\n")
        answer += [0] * (ANSWER_STEPS - len(answer))  # pad after the newline (never a target)
        sequence = prompt + answer
        target = [-100] * (len(prompt) - 1) + encode(puzzle.solution + "\n")
        target += [-100] * (len(sequence) - 1 - len(target))
        rows.append(sequence[:-1])
        targets.append(target)
    return torch.tensor(rows), torch.tensor(targets)
