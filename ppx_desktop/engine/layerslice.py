"""One released-width slice of a frame: a temporal layer step and a depformer sub-step.

`bench --config layer` times this instead of the whole 17 GB model, so every machine can check
the precisions' ratios in seconds: the slice runs the same modules and kernels as a frame (the
temporal layer over a KV window of `kv_slots`, then `depformer_in`, the 6 depformer layers of
one sub-step and its output head), at the released widths (4096 / 1024, FFN 11264 / 2816).
A frame is 32 such temporal layers, 8 sub-steps, the text head and Mimi.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import LMConfig
from .lm import ScaledEmbedding
from .opcount import fill_random_
from .transformer import Transformer, TransformerState


class LayerSlice(nn.Module):
    """A temporal layer, `depformer_in`, a one-step depformer and one output head of `cfg`'s widths."""

    def __init__(self, cfg: LMConfig, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.cfg = cfg
        self.temporal = Transformer(cfg.dim, cfg.num_heads, 1, flavour="lm", ffn_dim=cfg.hidden_dim,
                                    context=cfg.context, rope_max_period=cfg.max_period, **kw)
        self.depformer_in = nn.Linear(cfg.dim, cfg.depformer_dim, bias=False, **kw)
        self.depformer_emb = ScaledEmbedding(cfg.card + 1, cfg.depformer_dim, **kw)
        # weights_per_step=1: one sub-step's weight block, read exactly as a sub-step reads its own.
        self.depformer = Transformer(cfg.depformer_dim, cfg.depformer_num_heads, cfg.depformer_num_layers,
                                     flavour="lm", ffn_dim=cfg.depformer_hidden_dim, context=None,
                                     rope_max_period=None, weights_per_step=1, **kw)
        self.head = nn.Linear(cfg.depformer_dim, cfg.card, bias=False, **kw)

    def init_state(self, kv_slots: int) -> tuple[TransformerState, TransformerState]:
        """Caches as a conversation `kv_slots - 1` frames in would have them."""
        dtype = self.depformer_emb.weight.dtype
        device = self.depformer_emb.weight.device
        temporal = self.temporal.init_state(1, self.cfg.context, device=device, dtype=dtype)
        temporal.offset.fill_(kv_slots - 1)
        return temporal, self.depformer.init_state(1, 1, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, token: torch.Tensor, state: tuple[TransformerState, TransformerState],
             kv_slots: int) -> torch.Tensor:
        """x `[1, 1, dim]`, token `[1]` -> head logits `[1, card]`; the state keeps its position."""
        temporal, dep = state
        limit = kv_slots if kv_slots < self.cfg.context else None
        z = self.temporal(x, temporal, kv_limit=limit)
        temporal.offset.sub_(1)  # stay at the same point of the conversation, step after step
        h = self.depformer_in(z) + self.depformer_emb(token[:, None])
        return self.head(self.depformer(h, dep, step=0, position=0))[:, 0]


def build_slice(cfg: LMConfig, device: torch.device, dtype: torch.dtype, quant: str = "none",
                seed: int = 0) -> LayerSlice:
    """A slice with random weights, quantised as the LM would be (`quant.convert_for_quant`)."""
    from .quant import convert_for_quant, packing_for, quantizing_converter

    float_slice = LayerSlice(cfg, device=device, dtype=dtype)
    fill_random_(float_slice, seed)
    if quant == "none":
        return float_slice.eval()
    packing = packing_for(device)
    target = LayerSlice(cfg, device="meta", dtype=dtype)
    convert = quantizing_converter(convert_for_quant(target, quant, packing), quant, dtype, packing)
    loaded: dict[str, torch.Tensor] = {}
    for key in list(float_slice.state_dict()):
        loaded.update(convert(key, float_slice.state_dict()[key]))
    del float_slice
    target.load_state_dict(loaded, strict=True, assign=True)
    return target.eval()


def released_lm_config(context: int | None = None) -> LMConfig:
    cfg = LMConfig()
    return cfg if context is None else dataclasses.replace(cfg, context=context)
