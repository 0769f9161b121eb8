"""How a completion's next token is chosen from the logits: greedily, or sampled with noise every
branch shares (``--temperature``).

Evolution strategies compare branches on the same prompts; sampled answers add noise of
their own to each branch's reward. With common random numbers that noise is the same for
every branch of an iteration: the Gumbel-max trick picks argmax(logits/T + g), which samples
from softmax(logits/T), and g — one standard Gumbel per (prompt, step, token) — is drawn
from a counter-based key (run seed, iteration, the prompt's place in the iteration, step),
so two branches that agree on a prefix sample the same next token unless their logits differ,
and every rank regenerates the same g without sending it (as the perturbation noise). Hoy et
al. (arXiv 2604.01499) sample ES training completions at temperature 1; Qiu et al. (arXiv
2509.24372) and EGGROLL decode greedily, as evaluations here always do.

The Gumbel's integer part is ``noise``'s SplitMix64 words (bit-identical everywhere); u takes
the words' high and low 32 bits, u = (x + 0.5)/2³², and g = −log(−log u) in float32 on the
device that asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hpcars.algorithm.noise import _signed, pair_words, stream_key

#: (logits [rows, vocab], step) -> token ids [rows]
Choose = Callable[[torch.Tensor, int], torch.Tensor]
SAMPLING_STREAM = 0x73616D706C65  # "sample": keys apart from the directions' and the prompts'


def greedy(logits: torch.Tensor, step: int) -> torch.Tensor:
    """The most likely token (the lower id on a tie)."""
    return logits.argmax(dim=-1)


def gumbel(seed: int, iteration: int, prompts: int, step: int, vocab: int, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise [prompts, vocab] of one decoding step, from (seed, iteration, prompt, step)."""
    keys = torch.tensor(
        [_signed(stream_key(seed ^ SAMPLING_STREAM, iteration, k, step)) for k in range(prompts)],
        dtype=torch.int64,
        device=device,
    )
    words = pair_words(keys, -(-vocab // 2))  # [prompts, ⌈V/2⌉] int64: two 32-bit halves each
    halves = torch.stack(((words >> 32) & 0xFFFFFFFF, words & 0xFFFFFFFF), dim=-1).reshape(prompts, -1)[:, :vocab]
    u = (halves.to(torch.float32) + 0.5) * 2.0**-32
    return -torch.log(-torch.log(u))


@dataclass(frozen=True)
class Sampled:
    """Sampling at ``temperature`` with noise shared by every branch of one iteration: rows are
    branch-major (row r answers prompt r mod ``prompts``)."""

    seed: int
    iteration: int
    prompts: int
    temperature: float

    def __call__(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        noise = gumbel(self.seed, self.iteration, self.prompts, step, logits.shape[-1], logits.device)
        rows = logits.shape[0]
        shared = noise.repeat(rows // self.prompts, 1)  # the same g for every branch's row of a prompt
        return (logits.float() / self.temperature + shared).argmax(dim=-1)
