"""A language model judged by a verifier: the task behind ``--task countdown`` and
``--task reasoning-gym:NAME``.

Three parts, each behind a small interface:

* a ``PromptSource`` — the training prompts, the held-out ones (``test`` to report,
  ``validation`` to tune), each prompt's text, and the judge of an answer: a reward in [0, 1]
  and whether the answer was well formed (Countdown's puzzles: ``hpcars.tasks.verifier``;
  reasoning-gym's datasets: ``hpcars.tasks.reasoning_gym``);
* a ``Codec`` — texts to token ids and ids back to text (the built-in model's characters, or
  a Hugging Face tokenizer: ``hpcars.tasks.hf_lm``);
* the model, and how it decodes (``hpcars.algorithm.generate``): greedy, or sampled at
  ``--temperature`` with noise shared by every branch (``hpcars.algorithm.decoding``), up to
  ``--max-new-tokens`` or the end-of-sequence token.

Every branch of an iteration answers the same ``--prompts`` prompts — common random numbers.
They are drawn by (run seed, iteration) from the training prompts, or with ``--prompt-pool K``
from a fixed pool of the first K of them (Qiu et al. 2025 score every member on the same fixed
set every iteration; ``--prompts K --prompt-pool K`` does exactly that). A branch's reward is
its mean over the prompts of the judge's reward, plus ``--format-reward`` w times the share of
well-formed answers (reported apart); with ``--fitness group-zscore`` it also reports the
reward per prompt. The score is the accuracy (reward 1) on ``--eval-prompts`` held-out
prompts, decoded greedily in fixed chunks so it does not depend on the world size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.decoding import Choose, Sampled, greedy
from hpcars.algorithm.generate import completions
from hpcars.algorithm.noise import stream_key
from hpcars.tasks.base import BranchOutcome

EVAL_CHUNK = 50  # held-out prompts per evaluation unit (one batched call of a fixed shape)
PROMPT_STREAM = 0x70726F6D7074  # "prompt"


class PromptSource(Protocol):
    """Prompts and their judge."""

    name: str
    #: tokens an answer may take unless --max-new-tokens says otherwise
    answer_steps: int

    def train(self) -> Sequence[Any]:
        """The training prompts (items), a fixed sequence."""
        ...

    def held_out(self, split: str, count: int) -> Sequence[Any]:
        """``count`` held-out items of ``split`` ("test" or "validation"), none of them a training one."""
        ...

    def text(self, item: Any) -> str: ...

    def judge(self, answer: str, item: Any) -> tuple[float, bool]:
        """(reward in [0, 1], whether the answer was well formed) of an answer's text."""
        ...


class Codec(Protocol):
    """What the task needs of a model's tokenizer."""

    #: ids that end an answer (decoding stops once every row has produced one)
    end_ids: tuple[int, ...]

    def prompts(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """Texts -> token ids [K, L], one tensor (padded where the tokenizer needs it)."""
        ...

    def answer(self, ids: Sequence[int]) -> str:
        """A completion's ids -> its text (up to where it ends)."""
        ...


@dataclass(frozen=True)
class LanguageOptions:
    """The command line's language-task options."""

    seed: int
    prompts: int = 16
    eval_prompts: int = 500
    eval_split: str = "test"
    format_reward: float = 0.0
    prompt_pool: int = 0
    temperature: float = 0.0
    max_new_tokens: int = 0
    groups: bool = False  # report each prompt's reward (--fitness group-zscore)


@dataclass(frozen=True)
class Prompts:
    """One iteration's prompts: the items, their tokens [K, L], and how answers are chosen."""

    items: tuple[Any, ...]
    tokens: torch.Tensor
    choose: Choose


class LanguageTask:
    input_dim = 0
    sample_unit = "completions"
    episodes_per_branch = 0
    eval_fields: tuple[str, ...] = ("correct", "format_only", "prompts")
    eval_columns: tuple[str, ...] = ("score", "eval_accuracy", "eval_format_only")

    def __init__(
        self,
        name: str,
        source: PromptSource,
        codec: Codec,
        build: Callable[[], nn.Module],
        options: LanguageOptions,
        provenance: dict[str, str] | None = None,
    ) -> None:
        self.name, self.source, self.codec, self._build, self.options = name, source, codec, build, options
        train = source.train()
        self.pool = tuple(train[: options.prompt_pool]) if options.prompt_pool else tuple(train)
        self.held = tuple(source.held_out(options.eval_split, options.eval_prompts))
        self.eval_units = -(-options.eval_prompts // EVAL_CHUNK)
        self.steps = options.max_new_tokens or source.answer_steps
        self._provenance = provenance or {}

    def build_model(self) -> nn.Module:
        return self._build()

    def provenance(self) -> dict[str, str]:
        """What a run's results depend on besides the software (a model file's hash)."""
        return dict(self._provenance)

    def example_inputs(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The model's input for checks before training: two held-out prompts."""
        return (self.codec.prompts([self.source.text(item) for item in self.held[:2]], device),)

    def picks(self, iteration: int) -> list[int]:
        """The indices into ``pool`` of an iteration's prompts: all of a pool no larger than
        --prompts, in order; else drawn by (seed, iteration)."""
        o = self.options
        if o.prompt_pool and o.prompts >= len(self.pool):
            return list(range(len(self.pool)))
        return [stream_key(o.seed, PROMPT_STREAM, iteration, i) % len(self.pool) for i in range(o.prompts)]

    def begin_iteration(self, iteration: int, member: int, device: torch.device) -> Prompts:
        items = tuple(self.pool[i] for i in self.picks(iteration))
        choose: Choose = greedy
        if self.options.temperature > 0:
            choose = Sampled(self.options.seed, iteration, len(items), self.options.temperature)
        return Prompts(items, self.codec.prompts([self.source.text(i) for i in items], device), choose)

    def judged(self, answers: torch.Tensor, items: Sequence[Any]) -> np.ndarray:
        """[..., K, steps] answer ids -> [..., K, 2]: the judge's reward, and whether the answer
        was well formed."""
        flat = answers.reshape(-1, len(items), answers.shape[-1]).cpu().tolist()
        out = np.zeros((len(flat), len(items), 2))
        for r, row in enumerate(flat):
            for i, (ids, item) in enumerate(zip(row, items, strict=True)):
                reward, well_formed = self.source.judge(self.codec.answer(ids), item)
                out[r, i] = (reward, well_formed)
        return out.reshape(*answers.shape[:-2], len(items), 2)

    def rewards(self, model: BatchedModel, stack: Stack, context: Prompts, branches: Sequence[int]) -> BranchOutcome:
        n = len(branches)
        answers = completions(model, stack, context.tokens, self.steps, context.choose, self.codec.end_ids)[:n]
        judged = self.judged(answers, context.items)  # [n, K, 2]
        per_prompt = judged[..., 0]
        if self.options.format_reward:
            per_prompt = per_prompt + self.options.format_reward * judged[..., 1]
        groups = per_prompt if self.options.groups else None
        return BranchOutcome(per_prompt.mean(axis=1), np.full(n, float(len(context.items))), None, groups)

    def evaluate_units(
        self, model: BatchedModel, flat: torch.Tensor, units: Sequence[int], iteration: int
    ) -> np.ndarray:
        rows = []
        for unit in units:
            chunk = self.held[unit * EVAL_CHUNK : (unit + 1) * EVAL_CHUNK]
            padded = chunk + (chunk[-1],) * (EVAL_CHUNK - len(chunk))  # every call of one shape
            tokens = self.codec.prompts([self.source.text(i) for i in padded], flat.device)
            answers = completions(model, flat[None], tokens, self.steps, greedy, self.codec.end_ids)[0]
            judged = self.judged(answers, padded)[: len(chunk)]
            correct = judged[:, 0] == 1.0
            rows.append((correct.sum(), (judged[:, 1].astype(bool) & ~correct).sum(), len(chunk)))
        return np.array(rows, dtype=np.float64).reshape(-1, 3)

    def summarize(self, rows: np.ndarray) -> dict[str, float]:
        total = rows[:, 2].sum()
        accuracy = float(rows[:, 0].sum() / total)
        return {"score": accuracy, "eval_accuracy": accuracy, "eval_format_only": float(rows[:, 1].sum() / total)}

    def describe(self, model: BatchedModel, flat: torch.Tensor) -> str:
        item = self.held[0]
        tokens = self.codec.prompts([self.source.text(item)], flat.device)
        answer = completions(model, flat[None], tokens, self.steps, greedy, self.codec.end_ids)[0, 0]
        size = sum(p.numel() for p in model.module.parameters())
        text = self.codec.answer(answer.tolist())
        return f"{self.name}: {size:,} parameters; held-out {self.source.text(item)!r} -> {text!r}"
