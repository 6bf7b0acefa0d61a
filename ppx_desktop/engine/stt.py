"""Kyutai's streaming speech-to-text model on our transformer: Mimi codes in, text tokens out.

The model (`STTModel`) is a Moshi temporal transformer without a depformer: each 80 ms frame it
embeds the previous text token and the frame's 32 audio codes, and predicts the next text token;
"extra heads" on the same output give the semantic end-of-turn probabilities. The text lags the
audio by the model's training delay (`stt_config.audio_delay_seconds`, 0.5 s for stt-1b-en_fr).

`STTGenerator.step(state, codes)` is one frame, written to run inside a captured frame function:
every position is a device tensor (the step count is the transformer state's `offset`), shapes
are fixed, nothing is read back to the host, and the state (`STTState`) is allocated once and
updated in place. It reproduces the reference generator (`moshi.models.lm.LMGen` with `dep_q = 0`):

* a token ring of `max_delay + 2` columns; the frame's audio codes go to column
  `(offset + delay_k) % CT`, the model reads column `offset % CT`, and a stream still within its
  delay (`offset <= delay_k`) reads its initial token instead (text_card for text, card for
  audio). So the codes of the very first frame after a reset are never seen by the model;
* the sampled text token goes to column `(offset + 1) % CT`; the token returned is the one at
  `offset + 1 - max_delay + delay_0`, and nothing valid comes out while `offset + 1 <= max_delay`
  (returned as `UNGENERATED_TOKEN`);
* attention keeps exactly `context` frames (the current moshi ring cache, unlike PersonaPlex's
  older copy that keeps one less): `exact_window=True` in our transformer.

Linear layers are plain `nn.Linear` / `StreamingAttention` as in the LM, so the same quantisation
module swap applies; embeddings and norms stay in floating point.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import torch
from torch import nn

from .lm import UNGENERATED_TOKEN, ScaledEmbedding, embed_streams
from .sampling import sample_token
from .stt_config import STTConfig, STTLMConfig
from .transformer import RMSNorm, Transformer, TransformerState


class STTModel(nn.Module):
    """Parameters named as the official `model.safetensors` keys (`emb.i`, `text_emb`,
    `transformer.layers.i.*`, `out_norm`, `text_linear`, `extra_heads.i`)."""

    def __init__(self, cfg: STTLMConfig, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        kw = dict(device=device, dtype=dtype)
        self.emb = nn.ModuleList(ScaledEmbedding(cfg.card + 1, cfg.dim, **kw) for _ in range(cfg.n_q))
        self.text_emb = ScaledEmbedding(cfg.text_card + 1, cfg.dim, **kw)
        self.transformer = Transformer(cfg.dim, cfg.num_heads, cfg.num_layers, flavour="lm", ffn_dim=cfg.hidden_dim,
                                       context=cfg.context, rope_max_period=cfg.max_period, **kw)
        self.out_norm = RMSNorm(cfg.dim, device=device)  # float32, cast on load, as in the LM
        self.text_linear = nn.Linear(cfg.dim, cfg.text_card, bias=False, **kw)
        self.extra_heads = nn.ModuleList(
            nn.Linear(cfg.dim, cfg.extra_heads_dim, bias=False, **kw) for _ in range(cfg.extra_heads_num_heads))

    @property
    def initial_tokens(self) -> list[int]:
        return [self.cfg.text_card] + [self.cfg.card] * self.cfg.n_q

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `[B, 1 + n_q, T]` -> `[B, T, dim]`, as the LM embeds its streams (`embed_streams`)."""
        return embed_streams(tokens, self.emb, self.text_emb)

    def forward_step(self, h: torch.Tensor, state: TransformerState | None = None, kv_limit: int | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings `[B, T, dim]` -> (normalised output z `[B, T, dim]`, text logits `[B, T, text_card]`)."""
        z = self.out_norm(self.transformer(h, state, exact_window=True, kv_limit=kv_limit))
        return z, self.text_linear(z)

    def end_of_turn(self, z: torch.Tensor) -> torch.Tensor:
        """z `[B, dim]` -> the extra heads' probabilities `[B, heads, extra_heads_dim]` (float32)."""
        if not len(self.extra_heads):
            return z.new_zeros(z.shape[0], 0, self.cfg.extra_heads_dim, dtype=torch.float32)
        return torch.stack([torch.softmax(head(z).float(), dim=-1) for head in self.extra_heads], dim=1)


@dataclass
class STTState:
    """One stream's state. `lm.offset` ([1] int64) counts the frames since the last reset: it is the
    RoPE position, the ring cache's end and the token ring's clock.

    Attributes:
        tokens: `[B, 1 + n_q, CT]` int64 ring of input columns (text row 0, audio rows 1..n_q).
        lm: the transformer's ring KV cache of `context` frames.
    """

    tokens: torch.Tensor
    lm: TransformerState

    def reset(self) -> None:
        # Stale columns stay: each one is rewritten, or replaced by an initial token, before it is read.
        self.lm.reset()

    def snapshot(self) -> STTState:
        return STTState(self.tokens.clone(), self.lm.clone())

    def restore(self, snap: STTState) -> None:
        """Copies `snap` in place (buffers keep their addresses, for captured graphs)."""
        self.tokens.copy_(snap.tokens)
        self.lm.copy_(snap.lm)


class STTStep(tp.NamedTuple):
    text: torch.Tensor  # [B] int64, the frame's text token (UNGENERATED_TOKEN within the start-up delay)
    text_logits: torch.Tensor  # [B, text_card] float32, of this call's model pass
    end_of_turn: torch.Tensor  # [B, heads, extra_heads_dim] float32 probabilities


class STTGenerator:
    """Runs an `STTModel` frame by frame (see the module docstring for the timeline).

    Args:
        use_sampling, temp, top_k: text sampling (greedy when `use_sampling` is false or temp is 0;
            the released model's own setting is greedy).
        rng: a generator for eager sampling (None: the device's default one, as a captured graph needs).
    """

    def __init__(self, model: STTModel, use_sampling: bool = False, temp: float = 0.0, top_k: int = 0,
                 rng: torch.Generator | None = None):
        cfg = model.cfg
        self.model, self.cfg = model, cfg
        self.use_sampling, self.temp, self.top_k, self.rng = use_sampling, temp, top_k, rng
        self.ct = cfg.max_delay + 2
        device = next(model.parameters()).device
        self.device = device
        self._delays = torch.tensor(cfg.delays, dtype=torch.long, device=device)  # [K]
        self._initial = torch.tensor(model.initial_tokens, dtype=torch.long, device=device).view(1, -1, 1)

    @classmethod
    def for_config(cls, model: STTModel, config: STTConfig, greedy: bool = True,
                   rng: torch.Generator | None = None) -> STTGenerator:
        """With the repository's sampling settings (`lm_gen_config`), or greedy."""
        return cls(model, use_sampling=not greedy and config.temp_text > 0, temp=config.temp_text,
                   top_k=config.top_k_text, rng=rng)

    @property
    def startup_frames(self) -> int:
        """Frames after a reset whose output is not a text token yet (0 for the released model)."""
        return self.cfg.max_delay

    def init_state(self, batch_size: int = 1) -> STTState:
        tokens = torch.full((batch_size, self.cfg.num_streams, self.ct), UNGENERATED_TOKEN, dtype=torch.long,
                            device=self.device)
        return STTState(tokens, self.model.transformer.init_state(batch_size, self.cfg.context))

    def step(self, state: STTState, codes: torch.Tensor, kv_limit: int | None = None) -> STTStep:
        """One frame: `codes` `[B, >= n_q, 1]` (the first n_q codebooks are read) -> `STTStep`.

        Tensor-only and fixed-shape (no host reads): safe to compile or capture. `kv_limit` as in
        `Transformer.context`: a host-known bound on the keys written so far (None: the whole ring).
        """
        cfg, ct = self.cfg, self.ct
        B = state.tokens.shape[0]
        offset = state.lm.offset  # [1], advanced in place by the transformer
        audio_cols = ((offset + self._delays[1:]) % ct).view(1, cfg.n_q, 1).expand(B, cfg.n_q, 1)
        state.tokens[:, 1:].scatter_(2, audio_cols, codes[:, :cfg.n_q])
        read = (offset % ct).view(1, 1, 1).expand(B, cfg.num_streams, 1)
        inp = state.tokens.gather(2, read)  # [B, K, 1]
        inp = torch.where((offset <= self._delays).view(1, -1, 1), self._initial, inp)
        before = offset.clone()  # the transformer advances `offset` in place
        z, text_logits = self.model.forward_step(self.model.embed(inp), state.lm, kv_limit)
        text_logits = text_logits[:, 0].float()
        text = sample_token(text_logits, self.use_sampling, self.temp, self.top_k, self.rng)  # [B]
        after = before + 1
        write = (after % ct).view(1, 1, 1).expand(B, 1, 1)
        state.tokens[:, :1].scatter_(2, write, text.view(B, 1, 1))
        out_col = ((after - cfg.max_delay + self._delays[0]) % ct).view(1, 1, 1).expand(B, 1, 1)
        out = state.tokens[:, :1].gather(2, out_col).view(B)
        out = torch.where(after > cfg.max_delay, out, UNGENERATED_TOKEN)
        return STTStep(out, text_logits, self.model.end_of_turn(z[:, 0]))


def stt_weight_bytes(config: STTConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of the model's weights in `dtype` (norms included; Mimi not)."""
    size = torch.tensor([], dtype=dtype).element_size()
    model = STTModel(config.lm, device="meta", dtype=dtype)
    return sum(t.numel() * size for t in model.state_dict().values())


def stt_cache_bytes(config: STTConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of one stream's KV ring in `dtype`."""
    size = torch.tensor([], dtype=dtype).element_size()
    return 2 * config.lm.num_layers * config.lm.context * config.lm.dim * size
