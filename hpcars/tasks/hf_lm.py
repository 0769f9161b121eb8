"""A Hugging Face causal LM from a local directory, as ``--task countdown``'s model: ``--hf-model DIR``.

The directory is what ``save_pretrained`` writes (``config.json``, the weights, the tokenizer's
files); it is read with ``local_files_only=True``, so nothing is downloaded. Two small parts
make such a model fit the task, which otherwise only knows the built-in character-level
transformer:

* ``CausalLM`` takes ``(tokens, cache)`` like ``hpcars.algorithm.transformer.Transformer``: the
  first call (the prompts, left-padded) builds the attention mask and positions from the pad
  token and keeps them, with the model's own key/value cache, in ``KVCache.state``; each later
  call appends one token per row. ``hpcars.algorithm.generate`` then decodes every low-rank
  branch as one batch through it, exactly as for the built-in model (the branches' corrections
  come from forward hooks on the model's ``nn.Linear``, ``nn.Embedding`` and norm layers).
* ``TokenizerCodec`` turns prompts into token ids (left-padded to the batch's longest, so a
  batch of prompts is one tensor) and answer ids back into text, cut at the end-of-sequence
  token or the first newline, for the verifier.

The model is loaded in float32 (the branches' corrections are float32) and in eval mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpcars.algorithm.transformer import KVCache
from hpcars.errors import ConfigError
from hpcars.tasks.countdown import Puzzle


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the hf extra is part of dev
        raise RuntimeError("--hf-model needs transformers: pip install 'hpcars[hf]'") from err
    return transformers


def _load(what: str, directory: str, load: Callable[[], Any]) -> Any:
    """``load()``, with whatever transformers raises on a broken directory (a config that is not
    JSON, missing or truncated weights, an unknown architecture: errors of several libraries,
    safetensors' included) as one line naming the option. It only reads the user's files, so any
    failure is a refusal of that input."""
    try:
        return load()
    except Exception as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError("--hf-model", f"{directory}: cannot load its {what} ({detail[:300]})") from None


def check_directory(path: str) -> str | None:
    """Why ``path`` cannot be a model directory (None when it can)."""
    if not (Path(path) / "config.json").is_file():
        return f"{path} is not a Hugging Face model directory (no config.json in it)"
    return None


class CausalLM(nn.Module):
    """Token ids [rows, t] (and a ``KVCache`` while decoding) -> logits [rows, t, vocab]."""

    def __init__(self, directory: str, pad_id: int) -> None:
        super().__init__()
        transformers = _transformers()
        self.lm = _load(
            "model",
            directory,
            lambda: transformers.AutoModelForCausalLM.from_pretrained(
                directory, local_files_only=True, dtype=torch.float32
            ),
        ).eval()
        self.pad_id = pad_id
        # the key/value cache's argument (and output): ``cache`` in recent releases, ``past_key_values`` before
        parameters = inspect.signature(self.lm.forward).parameters
        self.cache_name = "cache" if "cache" in parameters else "past_key_values"

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        if cache is None:
            return self.lm(input_ids=tokens).logits
        if cache.state is None:  # the prompts: left padding is masked, positions start at each prompt
            mask = ((tokens != self.pad_id).long().cumsum(dim=1) > 0).long()
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            out = self.lm(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True)
            cache.state = (out[self.cache_name], mask, positions[:, -1:] + 1)
            return out.logits
        past, mask, position = cache.state
        mask = torch.cat((mask, mask.new_ones(mask.shape[0], tokens.shape[1])), dim=1)
        kwargs = {self.cache_name: past}
        out = self.lm(input_ids=tokens, attention_mask=mask, position_ids=position, use_cache=True, **kwargs)
        cache.state = (out[self.cache_name], mask, position + tokens.shape[1])
        return out.logits


class TokenizerCodec:
    """Prompts -> left-padded token ids; answer ids -> text for the verifier."""

    def __init__(self, directory: str) -> None:
        transformers = _transformers()
        tokenizer = _load(
            "tokenizer", directory, lambda: transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
        )
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def prompts(self, batch: Sequence[Puzzle], device: torch.device | str = "cpu") -> torch.Tensor:
        ids = [self.tokenizer.encode(p.prompt, add_special_tokens=False) for p in batch]
        width = max(len(row) for row in ids)
        return torch.tensor([[self.pad_id] * (width - len(row)) + row for row in ids], device=device)

    def answer(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).split("\n", 1)[0]
