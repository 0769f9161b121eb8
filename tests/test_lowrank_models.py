"""Low-rank branches are θ + sν·A Bᵀ/√R wherever the model uses a parameter, on models written
the way others write them (``tests/models_for_tests.py``): tied embeddings (Llama, Qwen2,
GPT-2), GPT-2's transposed ``Conv1D`` and its own position ids, a bare position table beside
child layers, a LayerNorm over two dimensions — each against explicit per-branch weights, and
trained on 1 and 3 ranks to the same bits. A head that reads another layer's weight is
refused in one line, never approximated."""

from __future__ import annotations

import json

import pytest
import torch

import hpcars
from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.generate import completions, greedy
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import LowRank
from tests import lowrank_driver
from tests.conftest import run_cli, run_train
from tests.models_for_tests import EXACT, build, tokens

pytest.importorskip("transformers")


@pytest.mark.parametrize("name", EXACT)
def test_batched_branches_equal_explicit_weights(name):
    """ν = 0.5 and R = 2: branches far apart, so a perturbation applied at one use of a parameter
    and not another (a tied head) shows at once."""
    report = hpcars.check_perturbation(build(name), tokens(), rank=2, noise_std=0.5, branches=4)
    assert report.exact(), report.describe()
    assert set(report.deviation) == {"out"} and report.scale["out"] > 1.0


def test_tied_llama_answers_greedily_as_each_branch_alone():
    """The symptom the tie caused: greedy tokens of the batched branches against each branch's
    own weights (3 % agreement before the fix, all now)."""

    class Decoder(torch.nn.Module):  # (tokens, cache) -> logits, as generate.completions calls it
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, ids, cache=None):
            if cache is not None:
                cache.state = ids if cache.state is None else torch.cat((cache.state, ids), dim=1)
                ids = cache.state
            return self.inner(ids)

    model = Decoder(build("llama-tied"))
    spec = ParamSpec.of(model)
    kind = LowRank.of(model, 2)
    count = 6
    directions = NoiseSource(3).directions(0, 0, range(count), kind.noise_size)
    scale = torch.tensor([0.5, -0.5] * 3)
    branches = kind.branches(
        spec.flatten(model)[None], torch.zeros(count, dtype=torch.long), scale, directions, torch.arange(count)
    )
    prompts = tokens(4)[:, :5]
    got = completions(BatchedModel(model, torch.device("cpu")), branches, prompts, steps=6)
    dense = branches.dense()
    alone = build("llama-tied")
    for b in range(count):
        spec.load(model, dense[b])
        with torch.no_grad():
            assert torch.equal(got[b], greedy(model, prompts, 6)), b
    assert len({tuple(g.flatten().tolist()) for g in got}) > 1  # the branches do answer differently
    del alone


def test_a_head_reading_another_layers_weight_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(hpcars.ConfigError) as refused:
        hpcars.check_perturbation(build("hand-tied"), tokens(), rank=1)
    message = str(refused.value)
    assert message.startswith(
        "--perturbation: lowrank: parameter embed.weight (of embed) is used directly by the model"
    )
    done = run_train(
        [
            "--task",
            "tests.models_for_tests:hand_tied_problem",
            "--perturbation",
            "lowrank",
            "--run-dir",
            str(tmp_path / "r"),
        ]
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [f"hpcars.train: error: {message}"]
    assert not (tmp_path / "r" / "checkpoints").exists()
    # dense noise has no hooks to miss: the same model trains
    dense = run_train(
        ["--task", "tests.models_for_tests:hand_tied_problem", "--iterations", "1", "--run-dir", str(tmp_path / "d")]
    )
    assert dense.returncode == 0, dense.stderr


def test_check_perturbation_option_prints_the_check_before_training(tmp_path):
    args = ["--task", "tests.models_for_tests:qwen2_tied_problem", "--perturbation", "lowrank", "--check-perturbation"]
    done = run_train([*args, "--iterations", "1", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if "check:" in x)
    assert "lowrank x4 branches vs explicit weights: exact; out " in line


def test_every_model_trains_to_the_same_bits_on_1_and_3_ranks(tmp_path):
    lowrank_driver.main(tmp_path / "one")
    done = run_cli([str(tmp_path / "three")], ranks=3, module="tests.lowrank_driver", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in EXACT:
        one, three = (json.loads((tmp_path / w / name / "summary.json").read_text()) for w in ("one", "three"))
        assert one["params_sha256"] == three["params_sha256"], name
