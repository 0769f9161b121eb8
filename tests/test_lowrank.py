"""Low-rank perturbations on shared weights (``--perturbation lowrank``)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.models import Normalized, mlp
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import Dense, LowRank, LowRankBranches, make_perturbation
from tests.conftest import run_train

RANK = 3


def branches_of(model: nn.Module, count: int, rank: int = RANK, members: int = 1) -> tuple[LowRank, LowRankBranches]:
    spec = ParamSpec.of(model)
    kind = LowRank(spec, rank)
    theta = spec.flatten(model)
    bases = torch.stack([theta + 0.01 * m for m in range(members)])
    owner = torch.arange(count) % members
    scale = torch.tensor([0.05 if b % 2 == 0 else -0.05 for b in range(count)])
    scale[-1] = 0.0  # an unperturbed row (a judge row): exactly its base
    noise = NoiseSource(7).directions(0, 0, range(count), kind.noise_size)
    return kind, kind.branches(bases, owner, scale, noise, torch.arange(count))


def explicit(model: nn.Module, branches: LowRankBranches, x: torch.Tensor, shared: bool) -> torch.Tensor:
    """Branch by branch: W + sν A Bᵀ/√R built in full, loaded into a copy, called."""
    dense = branches.dense()
    outs = []
    for b in range(len(dense)):
        copy = BatchedModel(model, torch.device("cpu"))
        outs.append(copy.single(dense[b], x if shared else x[b]))
    return torch.stack(outs)


@pytest.mark.parametrize("members", [1, 2])
def test_batched_low_rank_forward_equals_explicit_per_branch_weights(members):
    torch.manual_seed(0)
    model = Normalized(mlp([5, 16, 16, 3]), 5)
    model.mean.copy_(torch.randn(5))
    model.inv_std.copy_(torch.rand(5) + 0.5)
    _, branches = branches_of(model, 6, members=members)
    batched = BatchedModel(model, torch.device("cpu"))
    x = torch.randn(11, 5)
    assert torch.allclose(batched(branches, x), explicit(model, branches, x, shared=True), atol=1e-5)
    per_row = torch.randn(6, 5)  # RL: one observation per branch
    assert torch.allclose(batched.per_branch(branches, per_row), explicit(model, branches, per_row, False), atol=1e-5)


def test_dense_view_is_base_plus_scaled_product_and_vectors_stay_dense():
    model = nn.Linear(4, 3)
    kind, branches = branches_of(model, 4)
    spec = ParamSpec.of(model)
    noise = NoiseSource(7).directions(0, 0, range(4), kind.noise_size)
    a = noise[0, : 3 * RANK].reshape(3, RANK)
    b = noise[0, 3 * RANK : 7 * RANK].reshape(4, RANK)
    weight = spec.flatten(model)[:12].reshape(3, 4) + 0.05 * (a @ b.T) / math.sqrt(RANK)
    assert torch.allclose(branches.dense()[0, :12].reshape(3, 4), weight, atol=1e-6)
    assert torch.equal(branches.dense()[0, 12:], spec.flatten(model)[12:] + 0.05 * noise[0, 7 * RANK :])
    assert torch.equal(branches.dense()[-1], spec.flatten(model))  # the unperturbed row: its base, bit for bit
    assert kind.noise_size == (3 + 4) * RANK + 3


def test_update_is_the_weighted_sum_of_the_directions():
    model = mlp([6, 8, 2])
    spec = ParamSpec.of(model)
    kind = LowRank(spec, RANK)
    noise = NoiseSource(3).directions(0, 0, range(5), kind.noise_size)
    weights = torch.tensor([0.3, -1.0, 0.25, 2.0, -0.5], dtype=torch.float64)
    ones = torch.ones(1)
    directions = [
        kind.branches(
            spec.flatten(model)[None] * 0, torch.zeros(1, dtype=torch.long), ones, noise, torch.tensor([k])
        ).dense()[0]
        for k in range(5)
    ]
    expected = sum(w * d.double() for w, d in zip(weights, directions, strict=True))
    total = torch.zeros(spec.size, dtype=kind.update_dtype)
    kind.step(weights, lambda cols: noise[:, cols], total)
    assert torch.allclose(total.double(), expected, atol=1e-5)


def test_a_model_without_matrices_gets_dense_noise():
    vector = nn.Module()
    vector.theta = nn.Parameter(torch.zeros(7))
    assert isinstance(make_perturbation("lowrank", vector, 7, 4), Dense)
    assert isinstance(make_perturbation("lowrank", nn.Linear(2, 2), 6, 4), LowRank)


LOWRANK = [
    "--task",
    "digits",
    "--hidden",
    "16",
    "--perturbation",
    "lowrank",
    "--perturbation-rank",
    "2",
    "--directions",
    "6",
    "--top-directions",
    "3",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


TRANSFORMER = [
    "--task",
    "tests.plugins_for_tests:tiny_lm",
    "--perturbation",
    "lowrank",
    "--perturbation-rank",
    "2",
    "--directions",
    "4",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--step-size",
    "0.05",
    "--noise-std",
    "0.05",
]


@pytest.mark.parametrize("args, ranks", [(LOWRANK, 2), (TRANSFORMER, 3)], ids=["mlp-digits", "transformer"])
def test_low_rank_run_is_world_size_invariant_resumes_bitwise_and_learns(tmp_path, args, ranks):
    whole, part, many = tmp_path / "whole", tmp_path / "part", tmp_path / "many"
    assert run_train([*args, "--iterations", "6", "--run-dir", str(whole)]).returncode == 0
    assert run_train([*args, "--iterations", "4", "--run-dir", str(part)]).returncode == 0
    assert run_train(["--resume", str(part), "--iterations", "6"]).returncode == 0
    done = run_train([*args, "--iterations", "6", "--run-dir", str(many)], ranks=ranks)
    assert done.returncode == 0, done.stderr
    assert summary(whole)["params_sha256"] == summary(part)["params_sha256"] == summary(many)["params_sha256"]
    assert summary(many)["world_sizes"] == [[0, ranks]]
    assert summary(whole)["final"]["score"] > summary(whole)["initial"]["score"]
    dense = tmp_path / "dense"
    assert (
        run_train(
            [*[a if a != "lowrank" else "dense" for a in args], "--iterations", "6", "--run-dir", str(dense)]
        ).returncode
        == 0
    )
    assert summary(dense)["params_sha256"] != summary(whole)["params_sha256"]  # other directions: other bits


def test_low_rank_with_a_compressed_space_is_one_line(tmp_path):
    done = run_train(["--perturbation", "lowrank", "--search-space", "pruned", "--run-dir", str(tmp_path / "r")])
    assert done.returncode == 2 and not (tmp_path / "r").exists()
    assert done.stderr.strip() == (
        "hpcars.train: error: --perturbation: lowrank perturbs the model's weight matrices; "
        "not with --search-space pruned (use full) (got 'lowrank')"
    )


def tiny_transformer() -> nn.Module:
    from hpcars.algorithm.transformer import Transformer, TransformerConfig

    torch.manual_seed(1)
    model = Transformer(TransformerConfig(vocab=11, d_model=16, heads=2, layers=2, d_ff=32, max_len=8))
    for p in model.parameters():  # away from the zero biases and unit norms of a fresh model
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


class CausalLM(nn.Module):
    """A Hugging Face causal LM as a plug-in holds it: token ids -> logits."""

    def __init__(self) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        config = transformers.Qwen2Config(
            vocab_size=13,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=16,
            tie_word_embeddings=False,
        )
        torch.manual_seed(2)
        self.lm = transformers.Qwen2ForCausalLM(config).eval()
        for p in self.lm.parameters():
            p.data.add_(0.05 * torch.randn_like(p))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits


@pytest.mark.parametrize("make", [tiny_transformer, CausalLM], ids=["built-in", "huggingface-qwen2"])
def test_transformers_low_rank_forward_equals_explicit_per_branch_weights(make, tmp_path):
    model = make()
    if isinstance(model, CausalLM):  # built from a local directory, as a user's checkpoint would be
        model.lm.save_pretrained(tmp_path / "lm")
        model.lm = type(model.lm).from_pretrained(tmp_path / "lm").eval()
    _, branches = branches_of(model, 5, members=2)
    batched = BatchedModel(model, torch.device("cpu"))
    ids = torch.randint(0, 11, (3, 7))
    got = batched(branches, ids)
    assert got.shape == (5, 3, 7, model(ids).shape[-1])
    assert torch.allclose(got, explicit(model, branches, ids, shared=True), atol=2e-5)
