"""Decoding every branch at once, for tasks whose reward judges generated text.

``completions(model, stack, prompts, steps)`` answers the same K prompts (token ids [K, L], all
of one length) with every branch of ``stack`` and returns the new tokens [B, K, steps]:

* low-rank branches (``LowRankBranches``): the branches are the batch — per base, its weights
  loaded once, the prompts tiled branch-major (B·K rows), the per-branch corrections added by
  ``perturbation.hooks.branch_hooks`` — one prompt pass, then one token per step through a
  ``KVCache``;
* a dense stack [B, P]: branch by branch, each row loaded into the module and its K prompts
  decoded as one batch (a model small enough for dense noise is small enough for this).

The module must take ``(tokens, cache)`` like ``hpcars.algorithm.transformer.Transformer``.
The next token is ``choose(logits, step)`` (``decoding.greedy`` unless given: the argmax, so a
branch's text is a function of its parameters; or ``decoding.Sampled``, with noise shared by
the branches). Decoding stops early once every row has produced one of ``end_ids`` (what
follows an end is never read); with calls of a fixed shape (``score_branches`` pads them) the
answers do not depend on the world size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hpcars.algorithm.branches import BatchedModel, Stack
from hpcars.algorithm.decoding import Choose
from hpcars.algorithm.decoding import greedy as argmax
from hpcars.algorithm.perturbation.hooks import branch_hooks
from hpcars.algorithm.perturbation.lowrank import LowRankBranches
from hpcars.algorithm.transformer import KVCache


def greedy(
    module: nn.Module, prompts: torch.Tensor, steps: int, choose: Choose = argmax, end_ids: Sequence[int] = ()
) -> torch.Tensor:
    """[rows, L] prompt ids -> [rows, steps] decoded ids (after every row has ended: ``end_ids[0]``)."""
    cache = KVCache()
    token = choose(module(prompts, cache)[:, -1], 0)
    out = [token]
    ends = torch.tensor(list(end_ids), dtype=token.dtype, device=token.device)
    ended = torch.isin(token, ends)
    for step in range(1, steps):
        if bool(ended.all()):
            out.append(torch.full_like(token, int(end_ids[0])))
            continue
        token = choose(module(token[:, None], cache)[:, -1], step)
        out.append(token)
        ended |= torch.isin(token, ends)
    return torch.stack(out, dim=1)


def completions(
    model: BatchedModel,
    stack: Stack,
    prompts: torch.Tensor,
    steps: int,
    choose: Choose = argmax,
    end_ids: Sequence[int] = (),
) -> torch.Tensor:
    """Every branch's answers to ``prompts``: [B, K, steps]."""
    module, spec = model.module, model.spec
    count, k = stack.shape[0], prompts.shape[0]
    out = torch.empty(count, k, steps, dtype=torch.long, device=prompts.device)
    with torch.no_grad():
        if isinstance(stack, LowRankBranches):
            for base in torch.unique(stack.owner).tolist():
                picked = torch.nonzero(stack.owner == base).flatten()
                stack.load_base(module, base)  # the shared weights: this base's θ
                with branch_hooks(module, stack.select(picked)):
                    rows = prompts.repeat(len(picked), 1)  # branch-major: the K prompts once per branch
                    out[picked] = greedy(module, rows, steps, choose, end_ids).view(len(picked), k, steps)
            return out
        dense = stack if isinstance(stack, torch.Tensor) else stack.dense()
        for b in range(count):
            spec.load(module, dense[b])
            out[b] = greedy(module, prompts, steps, choose, end_ids)
    return out
