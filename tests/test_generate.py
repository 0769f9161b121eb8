"""Greedy decoding of every branch at once (``hpcars.algorithm.generate``)."""

from __future__ import annotations

import torch

from hpcars.algorithm.branches import BatchedModel, ParamSpec
from hpcars.algorithm.generate import completions, greedy
from hpcars.algorithm.noise import NoiseSource
from hpcars.algorithm.perturbation import LowRank
from hpcars.algorithm.transformer import KVCache, Transformer, TransformerConfig

CONFIG = TransformerConfig(vocab=17, d_model=32, heads=4, layers=2, d_ff=64, max_len=24)


def test_the_kv_cache_gives_the_logits_of_the_whole_sequence():
    torch.manual_seed(0)
    model = Transformer(CONFIG).eval()
    tokens = torch.randint(0, 17, (3, 12))
    with torch.no_grad():
        whole = model(tokens)
        cache = KVCache()
        parts = [model(tokens[:, :8], cache)] + [model(tokens[:, t : t + 1], cache) for t in range(8, 12)]
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)


def test_batched_low_rank_decoding_equals_each_branch_decoded_alone():
    torch.manual_seed(1)
    model = Transformer(CONFIG).eval()
    spec = ParamSpec.of(model)
    kind = LowRank(spec, 2)
    count = 5
    directions = NoiseSource(3).directions(0, 0, range(count), kind.noise_size)
    scale = torch.tensor([0.5, -0.5, 0.5, -0.5, 0.0])  # large: the branches answer differently
    bases = spec.flatten(model)[None]
    branches = kind.branches(bases, torch.zeros(count, dtype=torch.long), scale, directions, torch.arange(count))
    prompts = torch.randint(0, 17, (4, 6))
    got = completions(BatchedModel(model, torch.device("cpu")), branches, prompts, steps=7)
    dense = branches.dense()
    alone = BatchedModel(Transformer(CONFIG).eval(), torch.device("cpu"))
    for b in range(count):
        spec.load(alone.module, dense[b])
        with torch.no_grad():
            assert torch.equal(got[b], greedy(alone.module, prompts, 7)), b
    assert not torch.equal(got[0], got[1])  # the perturbations do change the answers
    # a dense stack of the same branches decodes to the same answers
    assert torch.equal(completions(alone, dense, prompts, steps=7), got)
