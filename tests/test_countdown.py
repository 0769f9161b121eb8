"""Countdown: the verifier, and the puzzle splits fixed by the seed."""

from __future__ import annotations

import json

import pytest

from hpcars.tasks.countdown import HELDOUT, TRAIN, Puzzle, evaluate, held_out, puzzles, verify
from tests.conftest import run_train

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
        ("2 5+7-3", False, False),  # "2 5" is two numbers side by side, not 25
        ("25+7-\u0663", False, False),  # ARABIC-INDIC DIGIT THREE is not the digit 3
        ("25+7-3\u00b2", False, False),  # nor is a superscript two
        ("((25+7))-3", True, True),  # redundant parentheses are fine
        ("(" * 32 + "25+7-3" + ")" * 32, True, True),  # nested as deep as allowed
        ("(" * 33 + "25+7-3" + ")" * 33, False, False),  # deeper: malformed, not a RecursionError
        ("(" * 400 + "25+7-3" + ")" * 400, False, False),
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
    assert Puzzle((3, 7, 25), 29, "").prompt == "numbers  3  7 25, target 29:"


def test_vectorised_words_are_the_generator_s():
    from hpcars.algorithm.noise import stream_key
    from hpcars.tasks.countdown import STREAM, _words

    words = _words(7, 10, 3)
    assert [[int(w) for w in row] for row in words] == [
        [stream_key(7, STREAM, i, k) for k in range(8)] for i in (10, 11, 12)
    ]


RUN = ["--task", "countdown", "--perturbation", "lowrank", "--perturbation-rank", "2", "--directions", "3"]
RUN += ["--prompts", "4", "--eval-prompts", "50", "--eval-every", "2", "--checkpoint-every", "1"]
RUN += ["--noise-std", "0.05", "--step-size", "0.02"]


def test_a_countdown_run_is_world_size_invariant_and_resumes_bitwise(tmp_path):
    summaries = {}
    for ranks in (1, 3):
        run = tmp_path / f"r{ranks}"
        done = run_train([*RUN, "--iterations", "2", "--run-dir", str(run)], ranks)
        assert done.returncode == 0, done.stderr
        summaries[ranks] = json.loads((run / "summary.json").read_text())
    assert summaries[1]["params_sha256"] == summaries[3]["params_sha256"]
    assert summaries[1]["final"] == summaries[3]["final"]  # held-out accuracy, in fixed chunks
    assert set(summaries[1]["final"]) == {"score", "eval_accuracy", "eval_format_only"}
    assert 0.0 <= summaries[1]["final"]["score"] <= 1.0
    # stopped after iteration 1 and resumed: the same bits as the uninterrupted run
    run = tmp_path / "resumed"
    assert run_train([*RUN, "--iterations", "1", "--run-dir", str(run)]).returncode == 0
    done = run_train(["--resume", str(run), "--iterations", "2"])
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "summary.json").read_text())["params_sha256"] == summaries[1]["params_sha256"]


def test_countdown_refuses_v2_in_one_line(tmp_path):
    done = run_train(["--task", "countdown", "--variant", "v2", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2
    assert done.stderr.strip().startswith("hpcars.train: error: --variant: countdown's inputs are tokens")
