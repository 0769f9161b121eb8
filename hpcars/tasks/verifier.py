"""A language model judged by a verifier: ``--task countdown``.

The model reads a Countdown prompt (``hpcars.tasks.countdown``) character by character and
answers greedily; the reward of a branch is the fraction of the iteration's prompts it answers
right (1 per right answer, 0 otherwise; ``--format-reward w`` adds w per well-formed answer,
reported apart). Every branch of an iteration answers the same ``--prompts`` prompts, drawn
from the training pool by (run seed, iteration) — common random numbers, new ones every
iteration. The score is the accuracy on ``--eval-prompts`` held-out puzzles, which no
training prompt shares, evaluated in fixed chunks so it does not depend on the world size.

The model is the built-in character-level transformer (``MODEL``, 1.2·10⁶ parameters); start
from a pretrained one with ``--init-from`` (``examples/countdown_pretrain.py`` makes one). Or a
Hugging Face causal LM from a local directory, ``--hf-model DIR``, read with its own tokenizer
(``hpcars.tasks.hf_lm``). A ``Codec`` is what the two differ in: prompts to token ids, answer ids
to text. Decoding: ``hpcars.algorithm.generate`` — low-rank branches as one batch with a KV cache.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.generate import completions
from hpcars.algorithm.noise import stream_key
from hpcars.algorithm.transformer import Transformer, TransformerConfig
from hpcars.tasks.base import BranchOutcome
from hpcars.tasks.countdown import HELDOUT, TRAIN, Puzzle, puzzles, verify

VOCAB = "\n 0123456789+-*/(),:abegmnrstu"  # newline ends an answer
PROMPT_LENGTH = len("numbers 25 25 25, target 99:")  # every prompt: numbers and target right-aligned
ANSWER_STEPS = 12  # the longest answer ("(25-13)*24" and its newline) fits
MODEL = TransformerConfig(vocab=len(VOCAB), d_model=160, heads=4, layers=4, d_ff=640, max_len=48)
DATA_SEED = 2026  # the puzzle pool and the held-out set: the same for every run seed
TRAIN_POOL = 20_000  # training puzzles the iterations draw from
EVAL_CHUNK = 50  # held-out prompts per evaluation unit (one batched call of a fixed shape)
PROMPT_STREAM = 0x70726F6D7074  # "prompt"
VALIDATION_START = 2_000  # held-out puzzles from here on validate pretraining; evaluations use the first ones


def encode(text: str) -> list[int]:
    return [VOCAB.index(ch) for ch in text]


def decode(ids: Sequence[int]) -> str:
    """Token ids -> text, up to (not including) the first newline."""
    text = "".join(VOCAB[i] for i in ids)
    return text.split("\n", 1)[0]


def prompt_tokens(batch: Sequence[Puzzle], device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.tensor([encode(p.prompt) for p in batch], dtype=torch.long, device=device)


class Codec(Protocol):
    """What the verifier task needs of a model's tokenizer."""

    def prompts(self, batch: Sequence[Puzzle], device: torch.device | str = "cpu") -> torch.Tensor:
        """Puzzles -> token ids [K, L], one tensor (padded where the tokenizer needs it)."""
        ...

    def answer(self, ids: Sequence[int]) -> str:
        """A completion's ids -> the answer's text (up to where it ends)."""
        ...


class CharCodec:
    """The built-in model's characters (``VOCAB``): every prompt is ``PROMPT_LENGTH`` ids."""

    def prompts(self, batch: Sequence[Puzzle], device: torch.device | str = "cpu") -> torch.Tensor:
        return prompt_tokens(batch, device)

    def answer(self, ids: Sequence[int]) -> str:
        return decode(ids)


@functools.lru_cache(maxsize=2)
def train_pool(size: int = TRAIN_POOL) -> tuple[Puzzle, ...]:
    return tuple(puzzles(DATA_SEED, TRAIN, size))


@functools.lru_cache(maxsize=4)
def held_out_set(size: int, start: int = 0) -> tuple[Puzzle, ...]:
    return tuple(puzzles(DATA_SEED, HELDOUT, size, start))


def build_model(seed: int) -> nn.Module:
    """The task's transformer, initialised from ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_key(seed, 0x696E6974, 0, 0) & (2**62 - 1))  # "init"
        return Transformer(MODEL).eval()


@dataclass(frozen=True)
class Prompts:
    """One iteration's prompts: the puzzles and their tokens [K, PROMPT_LENGTH]."""

    puzzles: tuple[Puzzle, ...]
    tokens: torch.Tensor


def scores(answers: torch.Tensor, batch: Sequence[Puzzle], codec: Codec | None = None) -> np.ndarray:
    """[..., K, steps] answer ids -> [..., K, 2]: right, and well formed but wrong (``codec``:
    the built-in characters unless given)."""
    codec = codec or CharCodec()
    flat = answers.reshape(-1, len(batch), answers.shape[-1]).cpu().tolist()
    out = np.zeros((len(flat), len(batch), 2))
    for r, row in enumerate(flat):
        for i, (ids, puzzle) in enumerate(zip(row, batch, strict=True)):
            verdict = verify(codec.answer(ids), puzzle.numbers, puzzle.target)
            out[r, i] = (verdict.correct, verdict.well_formed and not verdict.correct)
    return out.reshape(*answers.shape[:-2], len(batch), 2)


class CountdownTask:
    name = "countdown"
    input_dim = 0
    sample_unit = "completions"
    episodes_per_branch = 0
    eval_fields: tuple[str, ...] = ("correct", "format_only", "prompts")
    eval_columns: tuple[str, ...] = ("score", "eval_accuracy", "eval_format_only")

    def __init__(
        self,
        seed: int,
        prompts: int = 16,
        eval_prompts: int = 500,
        format_reward: float = 0.0,
        held_start: int = 0,
        model_dir: str = "",
    ) -> None:
        """``held_start``: the first held-out puzzle evaluated (pretraining validates on puzzles
        from ``VALIDATION_START`` on, which the reported evaluations never use); ``model_dir``: a
        Hugging Face causal LM's directory instead of the built-in model."""
        self.seed, self.prompts, self.format_reward, self.model_dir = seed, prompts, format_reward, model_dir
        self.pool = train_pool()
        self.held = held_out_set(eval_prompts, held_start)
        self.eval_units = -(-eval_prompts // EVAL_CHUNK)
        self.codec: Codec = CharCodec()
        if model_dir:
            from hpcars.tasks.hf_lm import TokenizerCodec

            self.codec = TokenizerCodec(model_dir)

    def build_model(self) -> nn.Module:
        if self.model_dir:
            from hpcars.tasks.hf_lm import CausalLM, TokenizerCodec

            assert isinstance(self.codec, TokenizerCodec)
            return CausalLM(self.model_dir, self.codec.pad_id)
        return build_model(self.seed)

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Prompts:
        picks = [stream_key(self.seed, PROMPT_STREAM, iteration, i) % len(self.pool) for i in range(self.prompts)]
        batch = tuple(self.pool[i] for i in picks)
        return Prompts(batch, self.codec.prompts(batch, device))

    def example_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The model's input for checks before training: two held-out prompts."""
        return (self.codec.prompts(self.held[:2], device),)

    def rewards(self, model: BatchedModel, stack: Stack, context: Prompts, branches: Sequence[int]) -> BranchOutcome:
        n = len(branches)
        answers = completions(model, stack, context.tokens, ANSWER_STEPS)[:n]
        right_wrong = scores(answers, context.puzzles, self.codec)  # [n, K, 2]
        rewards = right_wrong[..., 0].mean(axis=1)
        if self.format_reward:
            rewards = rewards + self.format_reward * right_wrong.sum(axis=2).mean(
                axis=1
            )  # well formed = right + format-only
        return BranchOutcome(rewards, np.full(n, float(self.prompts)), None)

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        rows = []
        for unit in units:
            chunk = self.held[unit * EVAL_CHUNK : (unit + 1) * EVAL_CHUNK]
            padded = chunk + (chunk[-1],) * (EVAL_CHUNK - len(chunk))  # every call of one shape
            answers = completions(model, flat[None], self.codec.prompts(padded, flat.device), ANSWER_STEPS)[0]
            counts = scores(answers, padded, self.codec)[: len(chunk)].sum(axis=0)
            rows.append((counts[0], counts[1], len(chunk)))
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        total = rows[:, 2].sum()
        accuracy = float(rows[:, 0].sum() / total)
        return {"score": accuracy, "eval_accuracy": accuracy, "eval_format_only": float(rows[:, 1].sum() / total)}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        puzzle = self.held[0]
        answer = completions(model, flat[None], self.codec.prompts([puzzle], flat.device), ANSWER_STEPS)[0, 0]
        kind = f"Hugging Face causal LM {self.model_dir}" if self.model_dir else "character-level transformer"
        return (
            f"countdown: {kind}, {sum(p.numel() for p in model.module.parameters()):,} "
            f"parameters; held-out {puzzle.prompt!r} -> {self.codec.answer(answer.tolist())!r}"
        )


def teacher_batch(task: CountdownTask, picks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
