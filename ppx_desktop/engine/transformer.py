"""Streaming transformer shared by the Mimi codec and the language model.

Pieces: RMSNorm computed in float32, LayerNorm, LayerScale, interleaved RoPE, the GELU MLP (Mimi),
the SiLU-gated FFN (LM), causal self-attention over a ring KV cache, and a layer stack.

Streaming state is explicit (`TransformerState`), allocated once with fixed shapes and updated in
place, so a step has no host synchronisation and no Python branch on tensor values: it can be
captured in a CUDA graph.

Reference parity: the reference's ring cache labels the slot that holds the oldest key with a
future position, so once the ring is full a query sees `capacity - 1` keys, not `capacity`.
We reproduce that labelling (`ring_positions`) because PersonaPlex was run, and presumably tuned,
with it; `exact_window=True` gives the trained window instead.
"""

from __future__ import annotations

import math
import typing as tp
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """RMS normalisation in float32 (`rms_norm_f32`), eps 1e-8, parameter `alpha` [1, 1, D]."""

    def __init__(self, dim: int, eps: float = 1e-8, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(1, 1, dim, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_dtype = x.dtype
        x = x.float()
        # tensor + eps rather than eps + tensor: the reflected add creates a scalar tensor (an op).
        var = torch.mean(x * x, dim=-1, keepdim=True) + self.eps
        # alpha * rsqrt first, then x: the reference's multiply order, for bit-level parity.
        return (x * (self.alpha.float() * torch.rsqrt(var))).to(x_dtype)


class LayerScale(nn.Module):
    def __init__(self, dim: int, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), 0.01, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class GatedFFN(nn.Module):
    """SiLU-gated feed-forward: the first half of `linear_in` is the gate, the second the value."""

    def __init__(self, dim: int, hidden: int, device=None, dtype=None):
        super().__init__()
        self.linear_in = nn.Linear(dim, 2 * hidden, bias=False, device=device, dtype=dtype)
        self.linear_out = nn.Linear(hidden, dim, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear_in(x)
        h = h.view(*h.shape[:-1], 2, -1)  # [B, T, 2, H]
        return self.linear_out(F.silu(h[..., 0, :]) * h[..., 1, :])


def rope_tables(positions: torch.Tensor, dim: int, max_period: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables `[T, dim/2, 2]` (float32) at float positions `[T]`: (cos, cos) and (-sin, sin).

    Computed once per stack call and shared by every layer (positions are the same in all layers).
    """
    ds = torch.arange(dim // 2, device=positions.device, dtype=torch.float32)
    freqs = torch.exp(ds * (-math.log(max_period) * 2 / dim))
    angles = freqs * positions.view(-1, 1)  # [T, D/2]
    cos, sin = torch.cos(angles), torch.sin(angles)
    return torch.stack([cos, cos], dim=-1), torch.stack([-sin, sin], dim=-1)


def rotate(x: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """Interleaved RoPE of `x` `[..., T, D]` in float32, pairs (2i, 2i+1) being (real, imaginary).

    (r, i) -> (r cos - i sin, i cos + r sin) as `x * (cos, cos) + swap(x) * (-sin, sin)`: four ops
    instead of seven, with the same roundings (negation is exact and the sums commute).
    """
    x2 = x.view(*x.shape[:-1], x.shape[-1] // 2, 2).float()
    out = x2 * cos2 + x2.flip(-1) * sin2
    return out.to(x.dtype).view(x.shape)


def apply_rope(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, max_period: float):
    """Interleaved rotary embedding of q and k `[B, H, T, D]` at float positions `[T]`."""
    cos, sin = rope_tables(positions, q.shape[-1], max_period)
    return rotate(q, cos, sin), rotate(k, cos, sin)


def ring_positions(end: torch.Tensor, capacity: int, exact_window: bool = False,
                   num_slots: int | None = None) -> torch.Tensor:
    """Position label of every slot of a ring after `end` keys were written (-1: empty slot).

    The reference labels slot `end % capacity`, which holds the oldest key, with position `end`
    (in the future, hence masked); `exact_window` labels it with its true position instead.
    `num_slots` labels only the first slots (see `kv_limit` in `Transformer.context`).
    """
    slots = torch.arange(capacity if num_slots is None else num_slots, device=end.device, dtype=torch.long)
    delta = slots - end % capacity
    if exact_window:
        positions = torch.where(delta < 0, end + delta, end + delta - capacity)
    else:
        positions = torch.where(delta <= 0, end + delta, end + delta - capacity)
    return torch.where(slots >= end, -1, positions)


@dataclass
class TransformerState:
    """Streaming state of a transformer stack: per-layer ring KV caches and the position counter.

    `offset` counts the tokens written since the last reset; it is the RoPE position of the next
    token and the ring's end pointer (one device tensor, so no host sync).
    """

    keys: list[torch.Tensor]  # per layer [B, H, C, D]
    values: list[torch.Tensor]
    offset: torch.Tensor  # [1] int64

    def reset(self) -> None:
        # Stale cache contents stay: every slot is masked until written again.
        self.offset.zero_()

    def clone(self) -> TransformerState:
        return TransformerState(
            [k.clone() for k in self.keys], [v.clone() for v in self.values], self.offset.clone()
        )

    def copy_(self, other: TransformerState) -> None:
        for dst, src in zip(self.keys + self.values, other.keys + other.values):
            dst.copy_(src)
        self.offset.copy_(other.offset)

    def snapshot_touched(self, tokens: int) -> tuple:
        """The counter and the ring slots the next `tokens` streamed tokens will write (a few
        columns per layer instead of the whole cache), for `restore_touched`."""
        capacity = self.keys[0].shape[2]
        slots = (self.offset + torch.arange(tokens, device=self.offset.device)) % capacity  # device-side
        return (self.offset.clone(), slots, [k.index_select(2, slots) for k in self.keys],
                [v.index_select(2, slots) for v in self.values])

    def restore_touched(self, snap: tuple) -> None:
        """Undoes at most that many streamed tokens, in place."""
        offset, slots, keys, values = snap
        self.offset.copy_(offset)
        for dst, src in zip(self.keys + self.values, keys + values):
            dst.index_copy_(2, slots, src)


class StreamingAttention(nn.Module):
    """Causal multi-head self-attention, no biases, optional RoPE and optional weights per step.

    Args:
        dim: model width; `num_heads` heads of `dim // num_heads`.
        context: a query sees at most this many keys (None: unlimited).
        rope_max_period: RoPE max period, None for no positional encoding.
        weights_per_step: number of weight sets (depformer), 0 for shared weights.
    """

    def __init__(self, dim: int, num_heads: int, context: int | None, rope_max_period: float | None,
                 weights_per_step: int = 0, device=None, dtype=None):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.context = context
        self.rope_max_period = rope_max_period
        self.weights_per_step = weights_per_step
        mult = max(weights_per_step, 1)
        self.in_proj_weight = nn.Parameter(torch.empty(mult * 3 * dim, dim, device=device, dtype=dtype))
        self.out_proj = nn.Linear(dim, mult * dim, bias=False, device=device, dtype=dtype)
        if not self.in_proj_weight.is_meta:
            nn.init.normal_(self.in_proj_weight, std=dim**-0.5)

    def _project_in(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if not self.weights_per_step:
            return F.linear(x, self.in_proj_weight)
        return F.linear(x, self.in_proj_weight.view(self.weights_per_step, 3 * self.dim, self.dim)[step])

    def _project_out(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if not self.weights_per_step:
            return self.out_proj(x)
        return F.linear(x, self.out_proj.weight.view(self.weights_per_step, self.dim, self.dim)[step])

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None,
                ctx: StepContext, step: int = 0) -> torch.Tensor:
        """x `[B, T, D]`; with `cache` (k, v `[B, H, C, Dh]`) streams T new tokens at `ctx`'s slots."""
        B, T, _ = x.shape
        H = self.num_heads
        qkv = self._project_in(x, step).view(B, T, 3, H, -1).permute(2, 0, 3, 1, 4)  # [3, B, H, T, Dh]
        if ctx.rope is not None:
            qk = rotate(qkv[:2], *ctx.rope)  # q and k in one pass: [2, B, H, T, Dh]
            q, k = qk[0], qk[1]
        else:
            q, k = qkv[0], qkv[1]
        v = qkv[2]
        if cache is not None:
            k_cache, v_cache = cache
            if ctx.static_slot is not None:
                k_cache[:, :, ctx.static_slot:ctx.static_slot + T].copy_(k)
                v_cache[:, :, ctx.static_slot:ctx.static_slot + T].copy_(v)
            else:
                k_cache.index_copy_(2, ctx.slots, k)
                v_cache.index_copy_(2, ctx.slots, v)
            if ctx.kv_limit is not None:  # the slots past it are empty: reading them is wasted bandwidth
                k, v = k_cache[:, :, :ctx.kv_limit], v_cache[:, :, :ctx.kv_limit]
            else:
                k, v = k_cache, v_cache
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.mask)  # [B, H, T, Dh]
        out = out.transpose(1, 2).reshape(B, T, self.dim)
        return self._project_out(out, step)


class StepContext(tp.NamedTuple):
    """What every layer of a stack shares in one call, computed once per call rather than per layer:
    RoPE tables, the attention mask over the cache slots and where the new keys go."""

    mask: torch.Tensor  # [T, S] additive attention bias in the activations' dtype: 0 or -inf
    rope: tuple[torch.Tensor, torch.Tensor] | None  # rotary tables [T, Dh/2, 2] (`rope_tables`)
    slots: torch.Tensor | None  # [T] cache slots of the new tokens (device-side positions)
    static_slot: int | None  # first cache slot when positions are known on the host
    kv_limit: int | None = None  # attend to the first kv_limit cache slots only (None: all)


class TransformerLayer(nn.Module):
    """Pre-norm layer: x + LS1(attn(norm1(x))), then x + LS2(ffn(norm2(x))).

    Mimi flavour: LayerNorm, LayerScale, GELU MLP (`linear1`, `linear2`).
    LM flavour: RMSNorm (float32), no LayerScale, SiLU-gated FFN (`gating`, one per step if
    `weights_per_step`).
    """

    def __init__(self, dim: int, num_heads: int, *, flavour: str, ffn_dim: int, context: int | None,
                 rope_max_period: float | None, weights_per_step: int = 0, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.flavour = flavour
        self.self_attn = StreamingAttention(dim, num_heads, context, rope_max_period, weights_per_step, **kw)
        if flavour == "mimi":
            self.norm1 = nn.LayerNorm(dim, eps=1e-5, **kw)
            self.norm2 = nn.LayerNorm(dim, eps=1e-5, **kw)
            self.linear1 = nn.Linear(dim, ffn_dim, bias=False, **kw)
            self.linear2 = nn.Linear(ffn_dim, dim, bias=False, **kw)
            self.layer_scale_1 = LayerScale(dim, **kw)
            self.layer_scale_2 = LayerScale(dim, **kw)
        elif flavour == "lm":
            # RMSNorm alphas are created in float32, as in the reference; loading casts them.
            self.norm1 = RMSNorm(dim, device=device)
            self.norm2 = RMSNorm(dim, device=device)
            if weights_per_step:
                self.gating = nn.ModuleList(GatedFFN(dim, ffn_dim, **kw) for _ in range(weights_per_step))
            else:
                self.gating = GatedFFN(dim, ffn_dim, **kw)
        else:
            raise ValueError(flavour)
        self.weights_per_step = weights_per_step

    def _ffn(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if self.flavour == "mimi":
            return self.layer_scale_2(self.linear2(F.gelu(self.linear1(x))))
        if self.weights_per_step:
            return self.gating[step](x)
        return self.gating(x)

    def forward(self, x: torch.Tensor, cache, ctx: StepContext, step: int = 0):
        h = self.self_attn(self.norm1(x), cache, ctx, step)
        if self.flavour == "mimi":
            h = self.layer_scale_1(h)
        x = x + h
        return x + self._ffn(self.norm2(x), step)


class Transformer(nn.Module):
    """A stack of `TransformerLayer`s (key prefix `layers.i.`), streaming or whole-sequence."""

    def __init__(self, dim: int, num_heads: int, num_layers: int, **layer_kwargs: tp.Any):
        super().__init__()
        self.dim, self.num_heads = dim, num_heads
        self.layers = nn.ModuleList(TransformerLayer(dim, num_heads, **layer_kwargs) for _ in range(num_layers))

    def init_state(self, batch_size: int, capacity: int, device=None, dtype=None) -> TransformerState:
        """Preallocates the ring caches (`capacity` slots per layer)."""
        p = next(self.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        shape = (batch_size, self.num_heads, capacity, self.dim // self.num_heads)
        n = len(self.layers)
        return TransformerState(
            keys=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(n)],
            values=[torch.zeros(shape, device=device, dtype=dtype) for _ in range(n)],
            offset=torch.zeros(1, dtype=torch.long, device=device),
        )

    def context(self, T: int, device, state: TransformerState | None = None, position: int | None = None,
                exact_window: bool = False, dtype: torch.dtype = torch.float32,
                kv_limit: int | None = None) -> StepContext:
        """Positions, mask and RoPE tables of a call on T tokens (see `forward`).

        `kv_limit` (ring streaming only): the caller knows on the host that the ring has not
        wrapped and that at most `kv_limit` keys will be written after this call, so attention
        reads only those slots; every other slot is empty and would be masked anyway.
        """
        attn = self.layers[0].self_attn
        static_slot = slots = None
        if state is None:
            pos_q = torch.arange(T, device=device)
            pos_k = pos_q
        elif position is not None:
            capacity = state.keys[0].shape[2]
            if position + T > capacity:
                raise ValueError(f"position {position} + {T} tokens overflows the {capacity}-slot cache")
            static_slot = position
            pos_q = torch.arange(position, position + T, device=device)
            pos_k = torch.arange(capacity, device=device)  # slots past the new tokens are masked by causality
        else:
            capacity = state.keys[0].shape[2]
            pos_q = state.offset + torch.arange(T, device=device)  # [T]
            slots = pos_q % capacity
            if kv_limit is not None and not T <= kv_limit <= capacity:
                raise ValueError(f"kv_limit {kv_limit} must lie between {T} and the {capacity}-slot cache")
            pos_k = ring_positions(state.offset + T, capacity, exact_window, kv_limit)
        delta = pos_q.view(-1, 1) - pos_k.view(1, -1)  # [T, S]
        mask = delta >= 0
        if state is not None and position is None:
            mask = mask & (pos_k.view(1, -1) >= 0)
        elif position is not None and position + T == pos_k.shape[0] and not exact_window:
            # The reference's ring quirk (module docstring) once the cache is full: slot 0, the
            # oldest key, is labelled with a future position and so masked.
            mask = mask & (pos_k.view(1, -1) > 0)
        if attn.context is not None:
            mask = mask & (delta < attn.context)
        # Given a boolean mask, attention turns it into this 0/-inf bias itself, in every layer
        # (three kernels each); converting once per call gives the same values and saves ~250
        # launches per frame at the released depth.
        mask = torch.where(mask, 0.0, float("-inf")).to(dtype)
        rope = None
        if attn.rope_max_period is not None:
            rope = rope_tables(pos_q.float(), self.dim // self.num_heads, attn.rope_max_period)
        limit = kv_limit if state is not None and position is None else None
        return StepContext(mask, rope, slots, static_slot, limit)

    def forward(self, x: torch.Tensor, state: TransformerState | None = None, step: int = 0,
                exact_window: bool = False, position: int | None = None,
                kv_limit: int | None = None) -> torch.Tensor:
        """x `[B, T, D]`. Without state: positions 0..T-1, causal, window `context`.

        With `state`, streams at the device-side `state.offset` (then advanced); with `position`
        (a host int, the depformer's sub-step), writes slots position.. and leaves the offset alone.
        """
        ctx = self.context(x.shape[1], x.device, state, position, exact_window, x.dtype, kv_limit)
        for i, layer in enumerate(self.layers):
            cache = None if state is None else (state.keys[i], state.values[i])
            x = layer(x, cache, ctx, step)
        if state is not None and position is None:
            state.offset.add_(x.shape[1])
        return x
