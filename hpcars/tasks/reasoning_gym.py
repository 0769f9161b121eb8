"""reasoning-gym's datasets as prompts and judges: ``--task reasoning-gym:NAME``.

reasoning-gym (``pip install 'hpcars[llm]'``) generates a dataset's items procedurally from a
seed, offline: ``create_dataset(NAME, size=, seed=, **config)`` gives items with a ``question``
and an ``answer``, and the dataset's own ``score_answer(answer, item)`` judges an answer (1 for
right; some datasets give partial credit). ``--task-config KEY=VALUE,...`` is passed to the
dataset as its config — the difficulty knobs, e.g. ``min_digits=2,max_digits=2``; values are
read as TOML (``3``, ``0.5``, ``true``, ``"text"``; a bare word is text).

**Splits, disjoint and fixed.** One stream of items from ``DATA_SEED`` (the same for every run
seed); each question goes to ``test`` (one in ten), ``validation`` (one in ten) or ``train`` by a
hash of its text, so a question never appears in two splits, whatever the sizes asked for. A
split's items are its items in stream order — a question recurs as often as the generator draws
it, so every split follows the generator's distribution (keeping only first occurrences would
front-load a small easy sub-space, such as chain_sum's 200 one-digit sums, into the first items
of every split): the first ``--eval-prompts`` of ``test`` (or ``validation``, ``--eval-split``) are
evaluated, the first ``TRAIN_POOL`` of ``train`` are the training prompts. A split that the first
``STREAM_LIMIT`` items cannot fill is refused in one line.

**The answer** is taken from the completion by one rule, in order:

1. the text inside the last ``<answer>…</answer>`` (reasoning-gym's own convention);
2. else, when the item's reference answer is a number, the last number in the completion
   (commas between digits dropped: ``1,000`` is 1000);
3. else, the completion's first non-empty line.

It is well formed when rule 1 or 2 found it (rule 3: when the line is not empty). The reward
is ``score_answer`` of that answer; an answer scores as right when that is 1.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from hpcars.errors import ConfigError

DATA_SEED = 2026
TRAIN_POOL = 4_000  # training items
SPLITS = {"test": 0, "validation": 1}  # hash classes; the other eight of ten are "train"
CLASSES = 10
STREAM_LIMIT = 100_000  # items looked at before a split is declared too small
ANSWER_STEPS = 32
NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
TAGGED = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)


def parse_config(text: str) -> dict[str, Any]:
    """``KEY=VALUE,KEY=VALUE`` -> {KEY: value}, values as TOML (a bare word is text)."""
    config: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--task-config", f"expected KEY=VALUE, got {part!r}")
        try:
            config[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            config[key.strip()] = value.strip()
    return config


def split_of(question: str) -> str:
    """Which split a question belongs to (a hash of its text)."""
    h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "little") % CLASSES
    return next((name for name, c in SPLITS.items() if c == h), "train")


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def extract(completion: str, numeric: bool) -> tuple[str | None, bool]:
    """(the answer, whether it was well formed) of a completion, by the rule in the module's text."""
    tagged = TAGGED.findall(completion)
    if tagged:
        return tagged[-1].strip(), True
    if numeric:
        numbers = NUMBER.findall(completion)
        return (numbers[-1].replace(",", ""), True) if numbers else (None, False)
    line = next((x.strip() for x in completion.splitlines() if x.strip()), "")
    return (line or None), bool(line)


class ReasoningGymPrompts:
    """A reasoning-gym dataset as a ``PromptSource`` (``hpcars.tasks.language``)."""

    answer_steps = ANSWER_STEPS

    def __init__(self, dataset: str, config: dict[str, Any]) -> None:
        try:
            import reasoning_gym
        except ImportError:  # pragma: no cover - the llm extra is part of dev
            raise ConfigError("--task", "reasoning-gym:NAME needs reasoning-gym: pip install 'hpcars[llm]'") from None
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS:
            close = [n for n in DATASETS if dataset.lower() in n or n in dataset.lower()][:6]
            hint = f" (close: {', '.join(close)})" if close else f" ({len(DATASETS)} known, e.g. chain_sum)"
            raise ConfigError("--task", f"reasoning-gym has no dataset {dataset!r}{hint}")
        try:
            self.data = reasoning_gym.create_dataset(dataset, size=STREAM_LIMIT, seed=DATA_SEED, **config)
        except (TypeError, ValueError, AssertionError, KeyError) as err:
            raise ConfigError("--task-config", f"{dataset} does not take {config}: {err}") from None
        self.name = f"reasoning-gym:{dataset}"
        self._found: dict[str, list[dict[str, Any]]] = {"train": [], "test": [], "validation": []}
        self._next = 0

    def _fill(self, split: str, count: int) -> list[dict[str, Any]]:
        """The first ``count`` items of ``split``, generating the stream as far as needed."""
        found = self._found[split]
        while len(found) < count:
            if self._next >= STREAM_LIMIT:
                raise ConfigError(
                    "--eval-prompts" if split != "train" else "--task-config",
                    f"{self.name} with this config has only {len(found)} {split} items in its first "
                    f"{STREAM_LIMIT:,}; ask for fewer",
                )
            item = self.data[self._next]
            self._next += 1
            self._found[split_of(item["question"])].append(item)
        return found[:count]

    def train(self) -> Sequence[dict[str, Any]]:
        return tuple(self._fill("train", TRAIN_POOL))

    def held_out(self, split: str, count: int) -> Sequence[dict[str, Any]]:
        return tuple(self._fill(split, count))

    def text(self, item: dict[str, Any]) -> str:
        return str(item["question"])

    def judge(self, answer: str, item: dict[str, Any]) -> tuple[float, bool]:
        extracted, well_formed = extract(answer, _is_number(str(item["answer"])))
        try:
            score = float(self.data.score_answer(extracted, item))
        except Exception:  # a judge that cannot read the answer gives it nothing
            score = 0.0
        return score, well_formed
