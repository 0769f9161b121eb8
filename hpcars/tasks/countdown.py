"""Countdown puzzles and their verifier: reach a target with + − × ÷ over given numbers.

A puzzle is three numbers and a target, written as the prompt ``numbers  3  7 25, target 31:``.
A completion answers it when it is an arithmetic expression over integers, ``+ - * /`` and
parentheses that uses each of the numbers exactly once (no other number) and evaluates to the
target exactly (rational arithmetic: ``7/2*2`` is 7). That is the reward of the verifier task
(1 or 0); a completion that parses and uses only the given numbers, each at most once, but
misses the target or leaves a number out is "well formed" — counted apart, as the
reward-hacking figure (format without arithmetic). The game is the one Qiu et al. 2025
(arXiv 2509.24372) fine-tuned language models on with evolution strategies.

Puzzles come from a seed: candidate ``i`` is drawn from the counter-based generator's words
``stream_key(seed, STREAM, i, k)`` (``hpcars.algorithm.noise``), the same on every rank. Each is made solvable by
construction (the target is the value of a random expression over the numbers, which is kept as
its solution for teacher forcing). Held-out puzzles are those whose canonical form (sorted
numbers, target) hashes into one tenth of the hash space; the training stream skips them,
so the two splits are disjoint for every seed and fixed by it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hpcars.algorithm.noise import GAMMA, MUL1, MUL2, TAG, mix64

NUMBERS = 3  # per puzzle
LARGEST = 25  # numbers are drawn from 1 .. LARGEST
TARGET_MAX = 99  # targets are 1 .. TARGET_MAX
OPS = "+-*/"
TRAIN, HELDOUT = 0, 1  # the two splits
HELDOUT_SHARE = 10  # one puzzle class in ten is held out
STREAM = 0x636F756E74  # "count": the puzzles' stream of the counter-based generator
BATCH = 4096  # candidates drawn per vectorised pass
DIGITS = "0123456789"  # ASCII only: str.isdigit also takes '٣', '²', ...
MAX_DEPTH = 32  # parentheses nested deeper are malformed (the parser recurses once per level)


@dataclass(frozen=True)
class Puzzle:
    numbers: tuple[int, ...]
    target: int
    solution: str  # one expression that reaches the target (for teacher forcing; never shown to ES)

    @property
    def prompt(self) -> str:
        """Every prompt has one length: numbers and target right-aligned in two characters."""
        return f"numbers {' '.join(f'{n:2d}' for n in self.numbers)}, target {self.target:2d}:"

    @property
    def canonical(self) -> tuple[int, ...]:
        return (*sorted(self.numbers), self.target)


def held_out(numbers: tuple[int, ...], target: int) -> bool:
    """Whether the puzzle (numbers in any order, target) belongs to the held-out split."""
    h = 0
    for v in (*sorted(numbers), target):
        h = mix64(h ^ v)
    return h % HELDOUT_SHARE == 0


def _words(seed: int, start: int, count: int) -> np.ndarray:
    """``stream_key(seed, STREAM, index, k)`` for index in [start, start + count), k < 8: uint64 [count, 8]
    (the same words as the Python ``stream_key``, vectorised: the tests compare them)."""
    gamma = np.uint64(GAMMA)

    def mix(x: np.ndarray) -> np.ndarray:
        x = (x ^ (x >> np.uint64(30))) * np.uint64(MUL1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(MUL2)
        return x ^ (x >> np.uint64(31))

    with np.errstate(over="ignore"):
        h = np.array([mix64(seed ^ TAG)], dtype=np.uint64)
        h = mix(h + gamma * np.uint64(STREAM + 1))
        index = np.arange(start + 1, start + count + 1, dtype=np.uint64)
        h = mix(h + gamma * index)
        return mix(h[:, None] + gamma * np.arange(1, 9, dtype=np.uint64)[None, :])


def _apply(op: str, x: Fraction, y: Fraction) -> Fraction:
    return x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x / y


def _draws(seed: int, start: int, count: int) -> list[Puzzle | None]:
    """Candidates ``start .. start + count - 1`` of a seed's stream: a random expression over random
    numbers each, or None where its value is not an integer target in range."""
    out: list[Puzzle | None] = []
    for words in _words(seed, start, count).tolist():
        numbers = tuple(1 + w % LARGEST for w in words[:NUMBERS])
        order = sorted(range(NUMBERS), key=lambda k: words[3 + k])
        a, b, c = (numbers[k] for k in order)
        op1, op2 = OPS[words[6] % 4], OPS[words[7] % 4]
        nested = words[6] >> 8 & 1  # (a op b) op c, or a op (b op c)
        try:
            if nested:
                value, text = _apply(op2, _apply(op1, Fraction(a), Fraction(b)), Fraction(c)), f"({a}{op1}{b}){op2}{c}"
            else:
                value, text = _apply(op1, Fraction(a), _apply(op2, Fraction(b), Fraction(c))), f"{a}{op1}({b}{op2}{c})"
        except ZeroDivisionError:
            out.append(None)
            continue
        ok = value.denominator == 1 and 1 <= value <= TARGET_MAX
        out.append(Puzzle(numbers, int(value), _tidy(text, value)) if ok else None)
    return out


def _tidy(text: str, value: Fraction) -> str:
    """The solution without its parentheses when they change nothing (``(3+4)+5`` -> ``3+4+5``)."""
    bare = text.replace("(", "").replace(")", "")
    try:
        return bare if evaluate(bare) == value else text
    except ZeroDivisionError:  # 3/(2-2) without parentheses is 3/2-2: another expression
        return text


def puzzles(seed: int, split: int, count: int, start: int = 0) -> list[Puzzle]:
    """Puzzles ``start .. start + count - 1`` of ``split`` (TRAIN or HELDOUT) for ``seed``."""
    out: list[Puzzle] = []
    for first in itertools.count(0, BATCH):
        for puzzle in _draws(seed, first, BATCH):
            if puzzle is not None and held_out(puzzle.numbers, puzzle.target) == (split == HELDOUT):
                out.append(puzzle)
                if len(out) == start + count:
                    return out[start:]
    raise AssertionError("unreachable")


# -- the verifier ---------------------------------------------------------------------------
def _tokens(text: str) -> list[str]:
    out, number = [], ""
    for ch in text:
        if ch in DIGITS:
            number += ch
            continue
        if number:
            out.append(number)
            number = ""
        if ch == " ":  # separates tokens: "2 5" is two numbers (malformed), not 25
            continue
        if ch not in "+-*/()":
            raise ValueError(f"unexpected {ch!r}")
        out.append(ch)
    if number:
        out.append(number)
    if not out:
        raise ValueError("empty")
    return out


def _parse(text: str) -> tuple[Fraction, list[int]]:
    """(value, the numbers it uses in order) of an expression; ValueError if malformed."""
    tokens = _tokens(text)
    at = 0
    used: list[int] = []

    def peek() -> str | None:
        return tokens[at] if at < len(tokens) else None

    def take() -> str:
        nonlocal at
        at += 1
        return tokens[at - 1]

    def atom(depth: int) -> Fraction:
        token = peek()
        if token is None:
            raise ValueError("ends early")
        if token == "(":
            if depth == MAX_DEPTH:
                raise ValueError(f"parentheses nested deeper than {MAX_DEPTH}")
            take()
            value = expression(depth + 1)
            if peek() != ")":
                raise ValueError("unclosed (")
            take()
            return value
        if token[0] in DIGITS:
            if len(token) > 1 and token[0] == "0":
                raise ValueError("leading zero")
            used.append(int(take()))
            return Fraction(int(token))
        raise ValueError(f"unexpected {token!r}")

    def term(depth: int) -> Fraction:
        value = atom(depth)
        while peek() in ("*", "/"):
            op, right = take(), atom(depth)
            value = value * right if op == "*" else value / right
        return value

    def expression(depth: int) -> Fraction:
        value = term(depth)
        while peek() in ("+", "-"):
            op, right = take(), term(depth)
            value = value + right if op == "+" else value - right
        return value

    value = expression(0)
    if at != len(tokens):
        raise ValueError(f"unexpected {tokens[at]!r}")
    return value, used


def evaluate(text: str) -> Fraction:
    """The exact value of an expression (ValueError if malformed, ZeroDivisionError on x/0)."""
    return _parse(text)[0]


@dataclass(frozen=True)
class Verdict:
    correct: bool  # uses every number exactly once and reaches the target
    well_formed: bool  # parses, and uses only given numbers, none more often than given


def verify(completion: str, numbers: tuple[int, ...], target: int) -> Verdict:
    """The verifier's verdict on one completion (text up to its first newline)."""
    text = completion.split("\n", 1)[0].strip()
    try:
        value, used = _parse(text)
    except (ValueError, ZeroDivisionError):
        return Verdict(False, False)
    left = list(numbers)
    for n in used:
        if n not in left:
            return Verdict(False, False)
        left.remove(n)
    return Verdict(not left and value == target, True)
