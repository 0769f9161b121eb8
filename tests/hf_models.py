"""Tiny Hugging Face causal LMs saved as a user's would be, for the language-task tests: a
byte-level BPE tokenizer trained on the texts given and a random Qwen2 (large random weights,
so answers differ from prompt to prompt), written with ``save_pretrained``. Nothing is
downloaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

#: a ChatML template like SmolLM2's and Qwen's: the user's message, then the assistant's turn
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_tiny_lm(path: Path, texts: Sequence[str], tied: bool = False, chat_template: str | None = None) -> Path:
    import tokenizers
    import transformers

    byte_level = tokenizers.pre_tokenizers.ByteLevel
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = byte_level(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    special = ["<pad>", "<eos>", "<|im_start|>", "<|im_end|>"]
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=byte_level.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(list(texts), trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    if chat_template:
        tokenizer.chat_template = chat_template
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    lm = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        for p in lm.parameters():
            p.add_(0.2 * torch.randn_like(p))
    lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
