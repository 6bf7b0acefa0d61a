"""Weight-only quantisation of the LM's linear layers, as a module swap (gpt-fast style).

Kinds: "none" (the model's dtype), "int8" (`int8.py`: per-row scales, `_weight_int8pack_mm`) and
"int4" (`int4.py`: groups of 128 with scales and zero points, tinygemm). Every quantised layer
runs a kernel that reads the quantised bytes; no float copy of a quantised weight exists during a
frame (a byte trace in the tests holds us to it).

Quantised: every linear layer of the temporal transformer and the depformer (attention in/out
projections including the depformer's per-step blocks, the gated FFNs, `depformer_in`) and the
output heads (`text_linear`, the 16 `linears`). Embeddings and norms stay in the model's dtype:
a frame reads one row of each embedding table, so quantising them would save memory but no time.

fp8 is gone: with `F.linear(x, w.to(bf16))` it read more bytes than bfloat16, and a real fp8 path
(`torch._scaled_mm`) needs fp8 activations padded to 16 rows at batch 1 on Ada or newer only;
int8 saves the same memory on every GPU and is read as int8.

`convert_for_quant(module, kind, kind_of_device)` swaps the modules (on the meta device, before
loading); `quantizing_converter` turns each float weight into the quantised buffers as it is read
from the checkpoint, so the full-precision model never exists on the device.
"""

from __future__ import annotations

import torch
from torch import nn

from .int4 import WeightOnlyInt4Linear, int4_compatible
from .int8 import WeightOnlyInt8Linear, int8_compatible
from .transformer import StreamingAttention

QUANT_KINDS = ("none", "int8", "int4")
INT4_MIN_CAPABILITY = (8, 0)  # tinygemm's CUDA kernel: Ampere and newer
_MODULES = {"int8": WeightOnlyInt8Linear, "int4": WeightOnlyInt4Linear}


class QuantError(ValueError):
    """A quantisation kind cannot be used here; the message says what to use instead."""


def check_quant(kind: str, device: torch.device) -> None:
    """Raises QuantError if `kind` cannot run on `device`."""
    if kind == "fp8":
        raise QuantError("fp8 weights are no longer offered (they were slower than bfloat16): use --quant int8, "
                         "which takes the same memory, or --quant int4 for the smallest GPUs")
    if kind not in QUANT_KINDS:
        raise QuantError(f"unknown quantisation {kind!r}: use one of {', '.join(QUANT_KINDS)}")
    if kind == "int4" and device.type == "cuda":
        cap = torch.cuda.get_device_capability(device)
        if cap < INT4_MIN_CAPABILITY:
            raise QuantError(f"int4 weights need an NVIDIA GPU of compute capability 8.0 or newer (Ampere: RTX 30xx, "
                             f"A100, and later); this GPU has {cap[0]}.{cap[1]}. Use --quant int8 instead.")


def available_quants(device: torch.device) -> list[str]:
    """The quantisation kinds that run on `device`, largest weights first."""
    kinds = ["none", "int8", "int4"]
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < INT4_MIN_CAPABILITY:
        kinds.remove("int4")
    return kinds


def packing_for(device: torch.device | str) -> str:
    """The int4 packing a device's kernel reads ("cuda" or "cpu"; the meta device takes "cpu")."""
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def _quant_module(kind: str, in_features: int, out_features: int, steps: int, packing: str, device, dtype):
    if kind == "int4":
        return WeightOnlyInt4Linear(in_features, out_features, steps=steps, kind=packing, device=device, dtype=dtype)
    return WeightOnlyInt8Linear(in_features, out_features, steps=steps, device=device, dtype=dtype)


def _compatible(kind: str, layer: nn.Linear) -> bool:
    if kind == "int4":
        return int4_compatible(layer.out_features)
    return int8_compatible(layer.out_features, layer.in_features)


class QuantStreamingAttention(StreamingAttention):
    """`StreamingAttention` whose projections are quantised modules (`in_proj`, `out_proj`); with
    per-step weights each holds every step's block and `step` picks one."""

    def _project_in(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return self.in_proj(x, step if self.weights_per_step else None)

    def _project_out(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return self.out_proj(x, step if self.weights_per_step else None)


def convert_for_quant(module: nn.Module, kind: str, packing: str = "cpu") -> dict[str, tuple[str, int]]:
    """Swaps the linear layers of `module` for quantised ones, in place.

    Returns {float weight key: (quantised module prefix, steps)}: what the loader must quantise.
    `packing` is the int4 kernel's layout ("cuda" on a GPU, "cpu" on the CPU and meta device).
    """
    if kind == "none":
        return {}
    if kind not in _MODULES:
        raise QuantError(f"unknown quantisation {kind!r}: use one of {', '.join(QUANT_KINDS)}")
    plan: dict[str, tuple[str, int]] = {}
    for name, parent in list(module.named_modules()):
        prefix = f"{name}." if name else ""
        if isinstance(parent, StreamingAttention) and not isinstance(parent, QuantStreamingAttention):
            w, steps = parent.in_proj_weight, parent.weights_per_step
            mult = max(steps, 1)
            kw = dict(device=w.device, dtype=w.dtype)
            out_dtype = parent.out_proj.weight.dtype
            del parent.in_proj_weight
            parent.in_proj = _quant_module(kind, parent.dim, 3 * parent.dim, steps, packing, **kw)
            parent.out_proj = _quant_module(kind, parent.dim, parent.dim, steps, packing, device=w.device,
                                            dtype=out_dtype)
            assert w.shape[0] == mult * 3 * parent.dim
            parent.__class__ = QuantStreamingAttention
            plan[f"{prefix}in_proj_weight"] = (f"{prefix}in_proj.", steps)
            plan[f"{prefix}out_proj.weight"] = (f"{prefix}out_proj.", steps)
            continue
        if isinstance(parent, QuantStreamingAttention):
            continue
        for child_name, child in list(parent.named_children()):
            # Layers a kernel cannot take (a 6-way head) stay in floating point: they are tiny.
            if isinstance(child, nn.Linear) and child.bias is None and _compatible(kind, child):
                q = _quant_module(kind, child.in_features, child.out_features, 0, packing, device=child.weight.device,
                                  dtype=child.weight.dtype)
                setattr(parent, child_name, q)
                plan[f"{prefix}{child_name}.weight"] = (f"{prefix}{child_name}.", 0)
    return plan


def quantizing_converter(plan: dict[str, tuple[str, int]], kind: str, dtype: torch.dtype, packing: str = "cpu"):
    """A `load_weights` converter: each weight in `plan` becomes its quantised module's buffers on
    its way to the device (quantised where it arrives, one tensor at a time); other floating-point
    tensors are cast to `dtype`."""
    cls = _MODULES.get(kind)

    def convert(key: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
        if key not in plan:
            return {key: t.to(dtype) if t.is_floating_point() else t}
        prefix, steps = plan[key]
        extra = {"kind": packing} if kind == "int4" else {}
        return {prefix + name: v for name, v in cls.quantize(t, steps, dtype, **extra).items()}

    return convert


def quantized_weight_shapes(plan: dict[str, tuple[str, int]], float_shapes: dict[str, tuple[int, ...]]
                            ) -> set[tuple[int, ...]]:
    """The float shapes a quantised weight would have if it were dequantised: the whole
    checkpoint tensor and, for per-step weights, one step's block (what a trace must never see)."""
    shapes = set()
    for key, (_prefix, steps) in plan.items():
        shape = tuple(float_shapes[key])
        shapes.add(shape)
        if steps:
            shapes.add((shape[0] // steps, *shape[1:]))
    return shapes


def quantize_lm(lm: nn.Module, kind: str) -> nn.Module:
    """A quantised copy of a loaded LM (tests, benchmarks): built on meta, filled tensor by tensor."""
    from .lm import LMModel

    dtype = lm.text_linear.weight.dtype
    device = lm.text_linear.weight.device
    packing = packing_for(device)
    q = LMModel(lm.cfg, device="meta", dtype=dtype)
    convert = quantizing_converter(convert_for_quant(q, kind, packing), kind, dtype, packing)
    loaded: dict[str, torch.Tensor] = {}
    for key, t in lm.state_dict().items():
        loaded.update(convert(key, t))
    q.load_state_dict(loaded, strict=True, assign=True)
    return q.eval()
