"""Weight-only int4 linear layers through the tinygemm kernels, for 8 GB cards.

Layout: group-wise asymmetric 4-bit. Each group of `group` input channels of an output row has a
scale and a zero point; a weight is `(q - 8) * scale + zero` with `q` in 0..15 (the tinygemm
convention, checked against the CPU kernel in the tests). The kernels read the packed nibbles and
the `[K / group, N, 2]` scales-and-zeros tensor and never write a float weight:

- CUDA: `aten._weight_int4pack_mm` (tinygemm, compute capability 8.0 and newer; in the PyTorch
  wheel, capturable, no Triton), weights packed by `aten._convert_weight_to_int4pack`;
- CPU (and the meta device, for traces): `aten._weight_int4pack_mm_for_cpu`, packed by
  `aten._convert_weight_to_int4pack_for_cpu`.

Both layouts hold K * N / 2 bytes, so a meta-device trace in the CPU layout counts what the GPU reads.

Quantisation parameters are chosen to minimise each group's squared error rather than taken
from its min/max: a search over clipping ratios of the range, then least-squares refits of scale
and zero for the chosen codes (an outlier no longer stretches the step of the other 127 weights).
Scale and zero are rounded to the activations' dtype before the codes are computed against them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = (128, 64, 32)  # group sizes both kernels accept, largest (fewest scales) first
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85)  # of the group's range; smaller ratios were never chosen on test weights
REFITS = 3
# Rows are quantised (and CPU-packed) in chunks of about this many weights, a bounded transient
# while loading (the planner counts it; memory.py): 64 MB per float32 temporary on a GPU (and the
# meta device, which stands in for one); on a CPU 4 MB chunks stay in cache and run twice as fast.
_CHUNK_ELEMENTS = 1 << 24
_CPU_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Int4Layout:
    """How a layer with K input channels is stored: its group size, K padded to whole groups
    (tiny test models only; the released widths need none) and the CUDA packing's K tiles."""

    in_features: int
    group: int
    padded: int

    @classmethod
    def for_features(cls, in_features: int) -> Int4Layout:
        best = min(GROUPS, key=lambda g: (math.ceil(in_features / g) * g, -g))
        return cls(in_features, best, math.ceil(in_features / best) * best)

    @property
    def inner_k_tiles(self) -> int:
        # tinygemm tiles K by 16 * inner_k_tiles (2, 4 or 8); the largest that divides K.
        return next(t for t in (8, 4, 2) if self.padded % (16 * t) == 0)


def int4_compatible(out_features: int) -> bool:
    """The CPU packing needs N to be a multiple of 16 (CUDA: 8); all our layers are."""
    return out_features % 16 == 0


def _fit(wc: torch.Tensor, wm: torch.Tensor, q: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares scale and zero `[..., G]` for codes `q` `[..., G, g]` and weights given centred
    (`wc`) with their means `wm` `[..., G]`."""
    c = q - 8.0
    cm = c.mean(-1, keepdim=True)
    c.sub_(cm)
    var = (c * c).sum(-1)
    cov = c.mul_(wc).sum(-1)
    scale = cov / var.clamp(min=1e-20)  # var 0 (one code for the whole group) gives scale 0
    zero = wm - scale * cm[..., 0]
    return scale.to(dtype).float(), zero.to(dtype).float()


def _codes(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    safe = torch.where(scale == 0, 1.0, scale)
    return (w - zero[..., None]).div_(safe[..., None]).add_(8.0).round_().clamp_(0, 15)


def _error(w, q, scale, zero) -> torch.Tensor:
    return (q - 8.0).mul_(scale[..., None]).add_(zero[..., None]).sub_(w).square_().sum(-1)


def _quantize_rows(w: torch.Tensor, group: int, dtype: torch.dtype, search: bool):
    """w `[n, Kp]` float32 -> codes `[n, Kp]` (float, 0..15), scale and zero `[n, Kp / group]`."""
    wg = w.view(w.shape[0], -1, group)  # [n, G, g]
    wmin, wmax = wg.amin(-1), wg.amax(-1)
    q = scale = zero = err = None
    for ratio in (CLIP_RATIOS if search else (1.0,)):
        lo = wmin * ratio
        s2 = ((wmax - wmin) * (ratio / 15)).clamp_(min=1e-10).to(dtype).float()
        z2 = (lo + 8 * s2).to(dtype).float()
        q2 = _codes(wg, s2, z2)
        e2 = _error(wg, q2, s2, z2)
        if q is None:
            q, scale, zero, err = q2, s2, z2, e2
        else:
            q, scale, zero, err = _keep_better(q, scale, zero, err, q2, s2, z2, e2)
    if search:
        wm = wg.mean(-1)
        wc = wg - wm[..., None]
        for _ in range(REFITS):
            s2, z2 = _fit(wc, wm, q, dtype)
            q2 = _codes(wg, s2, z2)
            q, scale, zero, err = _keep_better(q, scale, zero, err, q2, s2, z2, _error(wg, q2, s2, z2))
    return q.view_as(w), scale, zero


def _keep_better(q, scale, zero, err, q2, s2, z2, e2):
    better = e2 < err
    return (torch.where(better[..., None], q2, q), torch.where(better, s2, scale), torch.where(better, z2, zero),
            torch.where(better, e2, err))


def quantize_int4(w: torch.Tensor, dtype: torch.dtype, search: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, Int4Layout]:
    """Float weight `[N, K]` -> (uint8 codes `[N, Kp]` in 0..15, scales-and-zeros `[Kp/g, N, 2]`
    in `dtype`, layout). `search=False` gives plain min/max parameters (the baseline in tests)."""
    n, k = w.shape
    layout = Int4Layout.for_features(k)
    rows = _chunk_rows(layout, w.device)
    codes, scales, zeros = [], [], []
    for start in range(0, n, rows):
        q, s, z = _quantize_rows(_padded_rows(w, start, rows, layout), layout.group, dtype, search)
        codes.append(q.to(torch.uint8))
        scales.append(s)
        zeros.append(z)
    q = torch.cat(codes)
    sz = torch.stack([torch.cat(scales), torch.cat(zeros)], dim=-1).transpose(0, 1).contiguous().to(dtype)
    return q, sz, layout


def _chunk_rows(layout: Int4Layout, device: torch.device) -> int:
    # Whole blocks of 64 rows: the CPU packing interleaves rows within such blocks (a chunk of 32
    # rows packs differently; 64 and its multiples match a one-piece packing, see the tests).
    elements = _CPU_CHUNK_ELEMENTS if device.type == "cpu" else _CHUNK_ELEMENTS
    return max(64, elements // layout.padded // 64 * 64)


def _padded_rows(w: torch.Tensor, start: int, rows: int, layout: Int4Layout) -> torch.Tensor:
    """Rows start.. of `w` in float32, K padded by repeating the last column (which neither
    widens a group's range nor adds error; the padded inputs are zeros anyway)."""
    chunk = w[start:start + rows].float()
    if layout.padded > layout.in_features:
        chunk = torch.cat([chunk, chunk[:, -1:].expand(-1, layout.padded - layout.in_features)], dim=1)
    return chunk


def dequantize_int4(q: torch.Tensor, sz: torch.Tensor, layout: Int4Layout) -> torch.Tensor:
    """The float32 weight `[N, K]` that codes and parameters stand for (tests, quality checks)."""
    scale = sz[..., 0].float().t().repeat_interleave(layout.group, dim=1)
    zero = sz[..., 1].float().t().repeat_interleave(layout.group, dim=1)
    return ((q.float() - 8) * scale + zero)[:, :layout.in_features]


def pack_int4(q: torch.Tensor, layout: Int4Layout, kind: str) -> torch.Tensor:
    """uint8 codes `[N, Kp]` -> the kernel's packed weight ("cuda" or "cpu" layout)."""
    if kind == "cuda":
        nibbles = q[:, ::2] << 4 | q[:, 1::2]  # two codes per byte, the even index in the high nibble
        return torch.ops.aten._convert_weight_to_int4pack(nibbles, layout.inner_k_tiles)
    # The CPU packing takes int32 codes; packing whole 64-row blocks at a time bounds the transient.
    rows = _chunk_rows(layout, q.device)
    return torch.cat([torch.ops.aten._convert_weight_to_int4pack_for_cpu(q[i:i + rows].to(torch.int32),
                                                                        layout.inner_k_tiles)
                      for i in range(0, q.shape[0], rows)])


def packed_shape(out_features: int, layout: Int4Layout, kind: str) -> tuple[tuple[int, ...], torch.dtype]:
    if kind == "cuda":
        t = layout.inner_k_tiles
        return (out_features // 8, layout.padded // (16 * t), 32, t // 2), torch.int32
    return (out_features, layout.padded // 2), torch.uint8


class WeightOnlyInt4Linear(nn.Module):
    """Bias-free linear layer with packed int4 `weight` and `scales_and_zeros`.

    Args:
        in_features, out_features: the float layer's shape of one step.
        steps: number of weight sets (the depformer's per-step weights), stacked on a leading
            dimension; `forward(x, step)` uses set `step`. 0 for an ordinary layer.
        kind: "cuda" (tinygemm) or "cpu" packing; "cpu" also serves the meta device.
        dtype: the activations' dtype (bf16 on CUDA), in which scales and zeros are stored.
    """

    def __init__(self, in_features: int, out_features: int, *, steps: int = 0, kind: str = "cpu",
                 device=None, dtype=None):
        super().__init__()
        if not int4_compatible(out_features):
            raise ValueError(f"int4 kernels need the output size to be a multiple of 16, got {out_features}")
        self.in_features, self.out_features, self.steps, self.kind = in_features, out_features, steps, kind
        self.layout = Int4Layout.for_features(in_features)
        lead = (steps,) if steps else ()
        shape, pdtype = packed_shape(out_features, self.layout, kind)
        groups = self.layout.padded // self.layout.group
        self.register_buffer("weight", torch.empty(*lead, *shape, dtype=pdtype, device=device))
        self.register_buffer("scales_and_zeros", torch.empty(*lead, groups, out_features, 2,
                                                             dtype=dtype or torch.float32, device=device))

    @classmethod
    def quantize(cls, w: torch.Tensor, steps: int, dtype: torch.dtype, kind: str = "cpu",
                 search: bool = True) -> dict[str, torch.Tensor]:
        """The module's buffers for float weight `w` `[steps * N, K]`."""
        packed, params = [], []
        for block in (w.view(steps, -1, w.shape[1]) if steps else [w]):
            q, sz, layout = quantize_int4(block, dtype, search)
            packed.append(pack_int4(q, layout, kind))
            params.append(sz)
        if not steps:
            return {"weight": packed[0], "scales_and_zeros": params[0]}
        return {"weight": torch.stack(packed), "scales_and_zeros": torch.stack(params)}

    def forward(self, x: torch.Tensor, step: int | None = None) -> torch.Tensor:
        w, sz = (self.weight[step], self.scales_and_zeros[step]) if self.steps else (self.weight,
                                                                                     self.scales_and_zeros)
        x2 = x.reshape(-1, self.in_features)
        if self.layout.padded > self.in_features:
            x2 = F.pad(x2, (0, self.layout.padded - self.in_features))
        if self.kind == "cuda":
            y = torch.ops.aten._weight_int4pack_mm(x2, w, self.layout.group, sz)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, w, self.layout.group, sz)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, steps={self.steps}, "
                f"group={self.layout.group}, kind={self.kind}")
