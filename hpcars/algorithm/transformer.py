"""A small decoder-only transformer built from ``nn.Linear``, for plug-ins and benches.

GPT-style (Radford et al. 2019): token and position embeddings, ``layers`` pre-norm
blocks of causal multi-head self-attention and a GELU MLP, a final LayerNorm and an
untied output projection. Every projection is an ``nn.Linear``, so
``--perturbation lowrank`` perturbs attention and MLP weights with thin factors on
shared matrices; embeddings get low-rank factors too (looked up by token), LayerNorm
weights and biases dense noise (``hpcars.algorithm.perturbation.hooks``).

``TransformerConfig(vocab, d_model, heads, layers, d_ff, max_len)``; ``forward(tokens
[batch, seq]) -> logits [batch, seq, vocab]``. ``parameter_count(config)`` says the size
before anything is built (about 12·layers·d_model² for d_ff = 4·d_model).

Decoding: ``forward(tokens, cache)`` with a ``KVCache`` appends the new tokens' keys and values
to it and attends to everything cached, so a greedy decoder feeds the prompt once and then one
token per step (``hpcars.algorithm.generate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class TransformerConfig:
    vocab: int = 64
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    d_ff: int = 512
    max_len: int = 64


class KVCache:
    """Keys and values of the tokens seen so far, per layer ([batch, heads, t, d_head] each)."""

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.state: Any = None  # a wrapped model's own cache (``hpcars.tasks.hf_lm.CausalLM``)

    @property
    def length(self) -> int:
        return self.layers[0][0].shape[2] if self.layers else 0


class Block(nn.Module):
    """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.norm1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.norm2 = nn.LayerNorm(c.d_model)
        self.up = nn.Linear(c.d_model, c.d_ff)
        self.down = nn.Linear(c.d_ff, c.d_model)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        q, k, v = (t.view(batch, seq, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        first = cache is None or len(cache.layers) <= layer
        if cache is not None:
            if not first:  # earlier tokens: the one new token sees all of them
                assert seq == 1, "after the prompt, a KVCache takes one token at a time"
                k = torch.cat((cache.layers[layer][0], k), dim=2)
                v = torch.cat((cache.layers[layer][1], v), dim=2)
                cache.layers[layer] = (k, v)
            else:
                cache.layers.append((k, v))
        # causal among the new tokens; a single new token attends to everything before it
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=first and seq > 1)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, seq, width))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.d_model % config.heads:
            raise ValueError(f"d_model={config.d_model} must be a multiple of heads={config.heads}")
        self.config = config
        self.tokens = nn.Embedding(config.vocab, config.d_model)
        self.positions = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + tokens.shape[-1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions.expand_as(tokens))  # one row per sequence
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.head(self.norm(x))


def parameter_count(c: TransformerConfig) -> int:
    """Parameters of ``Transformer(c)`` without building it."""
    block = 2 * 2 * c.d_model + (c.d_model + 1) * 3 * c.d_model + (c.d_model + 1) * c.d_model
    block += (c.d_model + 1) * c.d_ff + (c.d_ff + 1) * c.d_model
    embeddings = (c.vocab + c.max_len) * c.d_model
    return embeddings + c.layers * block + 2 * c.d_model + (c.d_model + 1) * c.vocab
