"""Countdown: the verifier, and the puzzle splits fixed by the seed."""

from __future__ import annotations

import pytest

from hpcars.tasks.countdown import HELDOUT, TRAIN, Puzzle, evaluate, held_out, puzzles, verify

NUMBERS, TARGET = (3, 7, 25), 29


@pytest.mark.parametrize(
    ("completion", "correct", "well_formed"),
    [
        ("25+7-3", True, True),  # right
        ("(25-3)+7\nmore text", True, True),  # right; what follows the first line is not read
        (" 7 + 25 - 3 ", True, True),  # spaces are allowed
        ("25+7", False, True),  # a number left out: well formed, wrong
        ("25-7+3", False, True),  # every number once, wrong value
        ("25+25-3", False, False),  # a number used twice
        ("25+7-3+1", False, False),  # a number that was not given
        ("25+(7-3", False, False),  # malformed
        ("25+7-3=29", False, False),  # malformed (an equals sign)
        ("", False, False),
        ("25/(7-7)+3", False, False),  # 7 twice, and a division by zero
        ("07+25-3", False, False),  # leading zero
    ],
)
def test_the_verifier(completion, correct, well_formed):
    verdict = verify(completion, NUMBERS, TARGET)
    assert (verdict.correct, verdict.well_formed) == (correct, well_formed)


def test_division_is_exact():
    assert evaluate("7/2*2") == 7
    assert verify("25/5*3", (3, 5, 25), 15).correct
    assert not verify("7/2+25", (2, 7, 25), 28).correct  # 28.5


def test_splits_are_disjoint_fixed_by_the_seed_and_solvable():
    train, held = puzzles(5, TRAIN, 400), puzzles(5, HELDOUT, 100)
    assert not {p.canonical for p in train} & {p.canonical for p in held}
    assert all(held_out(p.numbers, p.target) for p in held) and not any(held_out(p.numbers, p.target) for p in train)
    assert puzzles(5, TRAIN, 400) == train and puzzles(5, TRAIN, 10, start=390) == train[390:]
    assert puzzles(6, TRAIN, 400) != train  # another seed, other puzzles
    assert all(verify(p.solution, p.numbers, p.target).correct for p in train + held)
    assert Puzzle((3, 7, 25), 29, "").prompt == "numbers 3 7 25, target 29:"
