"""The PersonaPlex language model: temporal transformer over 17 token streams plus the depformer.

Forward passes only; the token cache, delays and sampling loop live in `generator.py`.
Module and parameter names follow the official `model.safetensors` keys exactly.

Streams: 0 text, 1..8 agent audio codebooks, 9..16 user audio codebooks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LMConfig
from .transformer import RMSNorm, Transformer, TransformerState

ZERO_TOKEN = -1  # embeds to an exact zero vector
UNGENERATED_TOKEN = -2


class ScaledEmbedding(nn.Embedding):
    """Embedding where token -1 gives an exact zero vector (other negatives clamp to 0)."""

    def reset_parameters(self) -> None:
        # Random init of a meta tensor is pointless and costly: the first `normal_` on the meta
        # device imports torch's Python meta kernels (seconds, tens of seconds on a slow disk).
        if not self.weight.is_meta:
            super().reset_parameters()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        y = super().forward(tokens.clamp(min=0))
        # masked_fill with a Python scalar: one op, and no scalar tensor created per call.
        return y.masked_fill((tokens == ZERO_TOKEN)[..., None], 0.0)


def embed_streams(tokens: torch.Tensor, audio_embs: nn.ModuleList, text_emb: nn.Module) -> torch.Tensor:
    """Sum of the stream embeddings, tokens `[B, 1 + n_q, T]` (text first) -> `[B, T, dim]`.

    Audio streams are summed in order and the text embedding is added last: the reference's
    order, which matters for bit parity (and for rounding in bf16). Shared by the LM and the
    speech-to-text model.
    """
    audio = tokens[:, 1:]  # [B, n_q, T]
    # Clamp and the zero-token test once for all audio streams (not per stream): fewer ops.
    index, zero = audio.clamp(min=0), (audio == ZERO_TOKEN)[..., None]
    rows = torch.stack([F.embedding(index[:, i], emb.weight) for i, emb in enumerate(audio_embs)], dim=1)
    rows = rows.masked_fill(zero, 0.0)  # [B, n_q, T, dim]
    h = rows[:, 0]
    for i in range(1, len(audio_embs)):
        h = h + rows[:, i]
    return h + text_emb(tokens[:, 0])


class LMModel(nn.Module):
    # offload.LayerStreamer once some temporal layers stream from host memory (it sets this).
    streamer = None

    def __init__(self, cfg: LMConfig, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        kw = dict(device=device, dtype=dtype)
        self.emb = nn.ModuleList(ScaledEmbedding(cfg.card + 1, cfg.dim, **kw) for _ in range(cfg.n_q))
        self.text_emb = ScaledEmbedding(cfg.text_card + 1, cfg.dim, **kw)
        self.transformer = Transformer(
            cfg.dim, cfg.num_heads, cfg.num_layers, flavour="lm", ffn_dim=cfg.hidden_dim,
            context=cfg.context, rope_max_period=cfg.max_period, **kw,
        )
        self.out_norm = RMSNorm(cfg.dim, device=device)
        self.text_linear = nn.Linear(cfg.dim, cfg.text_out_card, bias=False, **kw)
        # Depformer: one input projection, FFN and attention weight block per codebook step, no
        # positional encoding, no context limit (its cache holds one slot per step).
        self.depformer_in = nn.ModuleList(
            nn.Linear(cfg.dim, cfg.depformer_dim, bias=False, **kw) for _ in range(cfg.dep_q)
        )
        self.depformer_emb = nn.ModuleList(
            ScaledEmbedding(cfg.card + 1, cfg.depformer_dim, **kw) for _ in range(cfg.dep_q - 1)
        )
        self.depformer_text_emb = ScaledEmbedding(cfg.text_card + 1, cfg.depformer_dim, **kw)
        self.depformer = Transformer(
            cfg.depformer_dim, cfg.depformer_num_heads, cfg.depformer_num_layers, flavour="lm",
            ffn_dim=cfg.depformer_hidden_dim, context=None, rope_max_period=None,
            weights_per_step=cfg.dep_q, **kw,
        )
        self.linears = nn.ModuleList(nn.Linear(cfg.depformer_dim, cfg.card, bias=False, **kw) for _ in range(cfg.dep_q))

    @property
    def initial_tokens(self) -> list[int]:
        """Initial token per stream: text_card for text, card for audio."""
        return [self.cfg.text_card] + [self.cfg.card] * self.cfg.n_q

    def init_state(self, batch_size: int) -> tuple[TransformerState, TransformerState]:
        """Preallocated streaming state: temporal ring cache and the per-frame depformer cache."""
        # The caches take the activations' dtype (the embeddings'): with quantised layers the first
        # parameter of a stack can be a float32 norm.
        kw = dict(device=self.text_emb.weight.device, dtype=self.text_emb.weight.dtype)
        return (self.transformer.init_state(batch_size, self.cfg.context, **kw),
                self.depformer.init_state(batch_size, self.cfg.dep_q, **kw))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of the 17 stream embeddings, tokens `[B, 17, T]` -> `[B, T, dim]` (`embed_streams`)."""
        return embed_streams(tokens, self.emb, self.text_emb)

    def temporal(self, h: torch.Tensor, state: TransformerState | None = None, exact_window: bool = False,
                 kv_limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding sum `[B, T, dim]` -> (normalised output z `[B, T, dim]`, text logits `[B, T, text_card]`).

        `kv_limit`: see `Transformer.context` (the generator derives it from its host offset)."""
        z = self.out_norm(self.transformer(h, state, exact_window=exact_window, kv_limit=kv_limit))
        return z, self.text_linear(z)

    def depformer_step(self, n: int, z: torch.Tensor, prev_token: torch.Tensor,
                       state: TransformerState) -> torch.Tensor:
        """Sub-step `n` (predicts stream n + 1): z `[B, 1, dim]`, prev_token `[B]` -> logits `[B, card]`.

        `prev_token` is the text token for n = 0, else the token of stream n. Sub-step n writes
        cache slot n and attends to slots 0..n, positions known on the host, so `state` needs no
        reset between frames.
        """
        emb = self.depformer_text_emb if n == 0 else self.depformer_emb[n - 1]
        x = self.depformer_in[n](z) + emb(prev_token[:, None])
        y = self.depformer(x, state, step=n, position=n)
        return self.linears[n](y)[:, 0]
