"""Weight-only int8 linear layers read as int8 bytes: `torch._weight_int8pack_mm`.

At batch 1 a frame reads every weight once, so the bytes read set the frame time. This kernel
reads the int8 weight and one scale per output channel and computes `x @ (q * scale).T` without
ever writing a float copy of the weight (the cast happens in registers). It exists for CPU and
CUDA in the PyTorch wheel (no Triton, no extra package) and is capturable in a CUDA graph, which
is why we use it rather than torchao's int8 weight-only tensor subclass: our modules stay plain
buffers that `load_state_dict(assign=True)` fills tensor by tensor, and the depformer's per-step
weights are simple slices.

Scales: the kernel takes them in the activations' dtype. We round each scale to that dtype
*before* quantising and quantise against the rounded value, so the stored pair `(q, scale)` is
exactly what we meant (a bf16 rounding of the scale after quantising would add up to 0.4 % error
per output channel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

QMAX = 127
# With bfloat16 activations the CPU kernel reads K in blocks of 16 (torch 2.13): for other widths it
# reads past the end of each row of x and of the weight, and whatever memory follows leaks into
# the output (NaN at worst). Such layers store zero-padded codes and pad their input: tiny test
# widths only (the released layers are multiples of 64).
K_BLOCK = 16
_CHUNK_ELEMENTS = 1 << 24  # weights quantised at a time: 64 MB per float32 temporary while loading


def quantize_int8(w: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Float weight `[N, K]` -> (int8 `[N, K]`, scale `[N]` in `scale_dtype`), symmetric per row.

    `scale` is rounded to `scale_dtype` first (upwards if rounding made it smaller, so no value
    clips by more than half a step) and `q` is computed against the rounded scale.
    """
    rows = max(1, _CHUNK_ELEMENTS // max(w.shape[1], 1))
    codes, scales = [], []
    for start in range(0, w.shape[0], rows):  # chunks of rows bound the float32 transient
        wf = w[start:start + rows].float()
        amax = wf.abs().amax(dim=-1).clamp(min=1e-12)
        scale = (amax / QMAX).to(scale_dtype)
        scale = torch.where(scale.float() * QMAX < amax, torch.nextafter(scale, torch.full_like(scale, float("inf"))),
                            scale)
        codes.append((wf / scale.float()[:, None]).round().clamp(-QMAX, QMAX).to(torch.int8))
        scales.append(scale)
    return torch.cat(codes), torch.cat(scales)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight the pair stands for (tests and quality checks only)."""
    return q.float() * scale.float()[:, None]


def padded_features(in_features: int) -> int:
    return -(-in_features // K_BLOCK) * K_BLOCK


def int8_compatible(out_features: int, in_features: int) -> bool:
    """Shapes the kernel handles safely. The CPU kernel crashed (segfault, torch 2.13) on shapes
    where neither dimension is a multiple of 8; every layer of our models has both multiples of 8."""
    return out_features % 8 == 0 and in_features % 8 == 0


class WeightOnlyInt8Linear(nn.Module):
    """Bias-free linear layer with int8 weight `weight` `[steps * N, Kp]` and per-row `scales`
    (Kp: K padded to a multiple of `K_BLOCK` with zero codes; K itself at every released width).

    Args:
        in_features, out_features: the float layer's shape of one step.
        steps: number of weight sets stacked on the rows (the depformer's per-step weights);
            `forward(x, step)` uses set `step`. 0 for an ordinary layer.
        dtype: the activations' dtype (the kernel wants its scales in it).
    """

    def __init__(self, in_features: int, out_features: int, *, steps: int = 0, device=None, dtype=None):
        super().__init__()
        if not int8_compatible(out_features, in_features):
            raise ValueError(f"int8 kernel needs both dimensions multiples of 8, got {out_features}x{in_features}")
        self.in_features, self.out_features, self.steps = in_features, out_features, steps
        self.padded = padded_features(in_features)
        rows = max(steps, 1) * out_features
        self.register_buffer("weight", torch.empty(rows, self.padded, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.empty(rows, dtype=dtype or torch.float32, device=device))

    @classmethod
    def quantize(cls, w: torch.Tensor, steps: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The module's buffers for float weight `w` `[steps * N, K]` (rows are independent)."""
        q, scales = quantize_int8(w, dtype)
        if q.shape[1] % K_BLOCK:
            q = F.pad(q, (0, padded_features(q.shape[1]) - q.shape[1]))
        return {"weight": q, "scales": scales}

    def forward(self, x: torch.Tensor, step: int | None = None) -> torch.Tensor:
        w, s = self.weight, self.scales
        if self.steps:
            n = self.out_features
            w, s = w[step * n:(step + 1) * n], s[step * n:(step + 1) * n]
        x2 = x.reshape(-1, self.in_features)
        if self.padded > self.in_features:
            x2 = F.pad(x2, (0, self.padded - self.in_features))
        y = torch._weight_int8pack_mm(x2, w, s)
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, steps={self.steps}"
