"""Token sampling: temperature + top-k, or greedy. Pure functions, no host synchronisation.

Sampling from the top-k uses the exponential-race trick (argmax of p / Exp(1)), which draws
exactly from the renormalised top-k distribution without `torch.multinomial` (a host sync on
CUDA). The draw order matches the reference, so a seeded run consumes the RNG the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings; the defaults are the reference's."""

    use_sampling: bool = True
    temp_text: float = 0.7
    top_k_text: int = 25
    temp_audio: float = 0.8
    top_k_audio: int = 250

    def __post_init__(self) -> None:
        # A NaN temperature samples garbage and a negative one inverts the distribution, silently.
        for name in ("temp_text", "temp_audio"):
            t = getattr(self, name)
            if not (isinstance(t, (int, float)) and math.isfinite(t) and t >= 0):
                raise ValueError(f"{name} must be a number of 0 or more (0: always the most likely token), got {t!r}")
        for name in ("top_k_text", "top_k_audio"):
            k = getattr(self, name)
            if not (isinstance(k, int) and k >= 0):
                raise ValueError(f"{name} must be a whole number of 0 (no limit) or more, got {k!r}")

    @classmethod
    def greedy(cls) -> SamplingConfig:
        return cls(use_sampling=False)


def sample_token(logits: torch.Tensor, use_sampling: bool, temp: float, top_k: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples from logits `[..., card]` (cast to float32) and returns int64 `[...]`."""
    logits = logits.float()
    if not use_sampling or temp <= 0.0:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits / temp, dim=-1)
    if top_k > 0:
        probs, indices = torch.topk(probs, min(top_k, probs.shape[-1]), dim=-1)
    else:
        indices = None
    flat = probs.reshape(-1, probs.shape[-1])
    race = flat / torch.empty_like(flat).exponential_(1, generator=generator)
    choice = race.argmax(dim=-1, keepdim=True).reshape(*probs.shape[:-1], 1)
    if indices is not None:
        choice = indices.gather(-1, choice)
    return choice[..., 0]
