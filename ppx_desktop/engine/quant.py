"""Weight-only quantisation of the LM's linear layers, as a module swap, and memory estimates.

At batch 1 every frame reads every weight once, so the frame time is bounded by bytes read:
int8 (or fp8) weights halve it against bf16. Activations stay in the model's dtype; each output
channel has its own scale, `w ~= q * scale`, and the product is `linear(x, q.to(x.dtype)) * scale`
(exact for the scale factoring, since a per-output-row scale commutes with the matmul). Under
`torch.compile` the cast fuses into the matmul, so the int8 bytes are what is read.

`convert_for_quant(lm, kind)` swaps the modules (on the meta device, before loading);
`quantize_weight` turns each float weight into (q, scale) as it is read from the checkpoint, so the
full-precision model never exists on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import StreamingAttention

QUANT_KINDS = ("none", "int8", "fp8")
_QDTYPE = {"int8": torch.int8, "fp8": torch.float8_e4m3fn}
_QMAX = {"int8": 127.0, "fp8": 448.0}  # largest representable magnitude


class QuantError(ValueError):
    """A quantisation kind cannot be used here; the message says what to use instead."""


def check_quant(kind: str, device: torch.device) -> None:
    """Raises QuantError if `kind` cannot run on `device`."""
    if kind not in QUANT_KINDS:
        raise QuantError(f"unknown quantisation {kind!r}: use one of {', '.join(QUANT_KINDS)}")
    if kind == "fp8":
        if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
            raise QuantError("fp8 weights need an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper, "
                             "Blackwell); use --quant int8, which saves the same memory on any device")


def quantize_weight(w: torch.Tensor, kind: str, rows_per_group: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Float weight `[out, in]` -> (quantised `[out, in]`, float32 scale `[out]`), symmetric per output row."""
    wf = w.float()
    amax = wf.abs().amax(dim=-1).clamp(min=1e-12)
    scale = amax / _QMAX[kind]
    q = wf / scale[:, None]
    q = q.round().clamp(-127, 127).to(torch.int8) if kind == "int8" else q.to(_QDTYPE[kind])
    return q, scale


class QuantLinear(nn.Module):
    """Bias-free linear layer with quantised weight (`weight`, int8 or fp8) and per-row `scale`.

    Args:
        in_features, out_features: the float layer's shape.
        kind: "int8" or "fp8".
        dtype: the activations' dtype (scales are stored in it, so the multiply needs no cast).
    """

    def __init__(self, in_features: int, out_features: int, kind: str, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features, self.kind = in_features, out_features, kind
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=_QDTYPE[kind], device=device))
        self.register_buffer("scale", torch.empty(out_features, dtype=dtype or torch.float32, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype)) * self.scale


def qlinear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return F.linear(x, weight.to(x.dtype)) * scale


class QuantStreamingAttention(StreamingAttention):
    """`StreamingAttention` whose `in_proj_weight` is quantised (`in_proj_scale` per row) and whose
    `out_proj` is a `QuantLinear`; per-step weight blocks are views of both."""

    def _project_in(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if not self.weights_per_step:
            return qlinear(x, self.in_proj_weight, self.in_proj_scale)
        rows = 3 * self.dim
        return qlinear(x, self.in_proj_weight.view(self.weights_per_step, rows, self.dim)[step],
                       self.in_proj_scale.view(self.weights_per_step, rows)[step])

    def _project_out(self, x: torch.Tensor, step: int) -> torch.Tensor:
        if not self.weights_per_step:
            return self.out_proj(x)
        return qlinear(x, self.out_proj.weight.view(self.weights_per_step, self.dim, self.dim)[step],
                       self.out_proj.scale.view(self.weights_per_step, self.dim)[step])


def convert_for_quant(lm: nn.Module, kind: str) -> set[str]:
    """Swaps the LM's linear layers for quantised ones, in place; returns the quantised weight keys.

    Embeddings, norms and Mimi stay in floating point: they are a small share of the bytes read.
    """
    if kind == "none":
        return set()
    keys: set[str] = set()
    for name, module in list(lm.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and child.bias is None:
                q = QuantLinear(child.in_features, child.out_features, kind, device=child.weight.device,
                                dtype=child.weight.dtype)
                setattr(module, child_name, q)
                keys.add(f"{full}.weight")
        if isinstance(module, StreamingAttention) and not isinstance(module, QuantStreamingAttention):
            w = module.in_proj_weight
            del module.in_proj_weight
            module.register_buffer("in_proj_weight", torch.empty(w.shape, dtype=_QDTYPE[kind], device=w.device))
            module.register_buffer("in_proj_scale", torch.empty(w.shape[0], dtype=w.dtype, device=w.device))
            module.__class__ = QuantStreamingAttention
            keys.add(f"{name}.in_proj_weight")
    return keys


def scale_key(weight_key: str) -> str:
    """The state-dict key of a quantised weight's scale."""
    return weight_key[: -len("in_proj_weight")] + "in_proj_scale" if weight_key.endswith("in_proj_weight") \
        else weight_key[: -len("weight")] + "scale"


def quantizing_converter(keys: set[str], kind: str, dtype: torch.dtype):
    """A `load_weights` converter: each weight in `keys` becomes (weight, scale) on its way to the device."""

    def convert(key: str, t: torch.Tensor) -> dict[str, torch.Tensor]:
        if key not in keys:
            return {key: t.to(dtype) if t.is_floating_point() else t}
        q, scale = quantize_weight(t, kind)
        return {key: q, scale_key(key): scale.to(dtype)}

    return convert


# --- memory ------------------------------------------------------------------------------------
_SIZES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}
# CUDA context, allocator slack, activations and the graph pool; measured values belong here once a
# GPU session has run. 0.75 GiB is the margin PyTorch decoders of this size typically need.
RUNTIME_MARGIN = 768 * 2**20


def estimate_memory(config, dtype: torch.dtype = torch.bfloat16, quant: str = "none", context: int | None = None,
                    parts: bool = False):
    """Device bytes needed to run `config` (a ModelConfig) at batch 1: LM weights in `dtype` with
    `quant` linear layers, the temporal KV cache of `context` frames in `dtype`, Mimi in float32
    and a runtime margin. With `parts=True` returns the components as a dict."""
    from .lm import LMModel
    from .mimi import Mimi

    size = _SIZES[dtype]
    lm = LMModel(config.lm, device="meta", dtype=dtype)
    quantised = convert_for_quant(lm, quant) if quant != "none" else set()
    weights = 0
    for key, t in lm.state_dict().items():
        if key in quantised:
            weights += t.numel()  # one byte per weight
        else:
            weights += t.numel() * size
    cfg = config.lm
    context = cfg.context if context is None else context
    kv = 2 * cfg.num_layers * context * cfg.dim * size
    kv += 2 * cfg.depformer_num_layers * cfg.dep_q * cfg.depformer_dim * size
    mimi = Mimi(config.mimi, device="meta")
    mimi_bytes = sum(t.numel() * 4 for t in mimi.state_dict().values())
    codebooks = mimi.quantizer.rvq_first.codebooks + mimi.quantizer.rvq_rest.codebooks
    mimi_bytes += sum(c.embedding.numel() * 4 for c in codebooks)  # centroid caches
    tr = config.mimi.transformer
    mimi_bytes += 2 * 2 * tr.num_layers * tr.context * tr.d_model * 4  # two directions' KV rings
    result = {"weights": weights, "kv_cache": kv, "mimi": mimi_bytes, "runtime": RUNTIME_MARGIN}
    result["total"] = sum(result.values())
    return result if parts else result["total"]


def fitting_precisions(config, free_bytes: int, device: torch.device, context: int | None = None) -> list[str]:
    """The precisions (bfloat16, int8, fp8) whose estimate fits in `free_bytes`, smallest last."""
    options = [("bfloat16", torch.bfloat16, "none"), ("int8", torch.bfloat16, "int8")]
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9):
        options.append(("fp8", torch.bfloat16, "fp8"))
    return [name for name, dtype, kind in options if estimate_memory(config, dtype, kind, context) <= free_bytes]


def quantize_lm(lm: nn.Module, kind: str) -> nn.Module:
    """A quantised copy of a loaded LM (tests, benchmarks): built on meta, filled tensor by tensor."""
    from .lm import LMModel

    dtype = lm.text_linear.weight.dtype
    q = LMModel(lm.cfg, device="meta", dtype=dtype)
    convert = quantizing_converter(convert_for_quant(q, kind), kind, dtype)
    loaded: dict[str, torch.Tensor] = {}
    for key, t in lm.state_dict().items():
        loaded.update(convert(key, t))
    q.load_state_dict(loaded, strict=True, assign=True)
    return q.eval()
