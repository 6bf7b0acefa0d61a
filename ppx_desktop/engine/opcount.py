"""Counting what a frame costs: ATen operations per frame and models of the released depth.

On a GPU every eager ATen operation is at least one kernel launch (5-10 us of host time), so the
number of operations per frame is a width-independent proxy for launch overhead that can be
measured on any CPU. `OpCounter` counts them with a dispatch mode; `deep_narrow_config` builds
the released architecture's depth and stream layout at a width a laptop runs in milliseconds.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .config import (
    MimiConfig,
    MimiTransformerConfig,
    ModelConfig,
    PromptConfig,
    QuantizerConfig,
    SeanetConfig,
)

# Ops that never launch work on a device: metadata only (`_unsafe_view` is the reshape inside
# `linear` on 3-d inputs; it aliases its input like a view).
_FREE = {"detach", "lift_fresh", "_local_scalar_dense", "_unsafe_view"}


class OpCounter(TorchDispatchMode):
    """Counts ATen operations dispatched while active, split into compute ops and views.

    Views (`view`, `select`, `permute`, ...) alias their input and launch nothing; they are
    counted apart so that `ops` is comparable with a kernel count.
    """

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.views: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if func.is_view:
            self.views[name] += 1
        elif name not in _FREE:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def reset(self) -> None:
        self.ops.clear()
        self.views.clear()


def deep_narrow_config(width: int = 64, depformer_width: int = 32, context: int = 3000) -> ModelConfig:
    """The released layer counts, stream layout and context at a narrow width (random weights).

    Operation counts do not depend on width, so this measures the real model's per-frame op count.
    """
    real = ModelConfig()
    lm = dataclasses.replace(
        real.lm, dim=width, num_heads=4, depformer_dim=depformer_width, depformer_num_heads=4,
        depformer_dim_feedforward=int(4.125 * depformer_width), text_card=512, context=context,
    )
    mimi = MimiConfig(
        seanet=SeanetConfig(dimension=32, n_filters=4),
        quantizer=QuantizerConfig(dimension=16, bins=real.mimi.quantizer.bins, input_dimension=32,
                                  output_dimension=32),
        transformer=MimiTransformerConfig(d_model=32, num_heads=2, dim_feedforward=64, input_dimension=32,
                                          output_dimensions=(32,)),
    )
    config = ModelConfig(mimi=mimi, lm=lm, prompt=PromptConfig())
    config.validate("deep_narrow_config")
    return config


def small_config() -> ModelConfig:
    """`bench --config small`: the released depth at width 256/128, about 60 M parameters."""
    return deep_narrow_config(width=256, depformer_width=128)


def fill_random_(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights of a sensible scale for a module built on a real device."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("alpha") or name.endswith("scale"):
                p.fill_(1.0 if name.endswith("alpha") else 0.1)
            elif p.dim() >= 2:
                bound = p.shape[-1] ** -0.5
                p.copy_(torch.empty(p.shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))


def count_ops(fn, *args, **kwargs) -> tuple[int, OpCounter]:
    """Runs `fn(*args, **kwargs)` once under an `OpCounter`; returns (compute ops, the counter)."""
    counter = OpCounter()
    with counter:
        fn(*args, **kwargs)
    return counter.total, counter


def random_model(config: ModelConfig, device: torch.device, dtype: torch.dtype, quant: str = "none", seed: int = 0,
                 untracked=contextlib.nullcontext):
    """A LoadedModel with random weights, built tensor by tensor (the released size fits 24 GB of RAM
    in bf16: no float32 copy of the LM ever exists, only one tensor at a time). On the meta device
    only shapes exist (memory and byte traces of the released size).

    `untracked()` wraps the building of the meta shape templates (a memory tracker's `paused`)."""
    from pathlib import Path

    from .checkpoint import conversion_order
    from .lm import LMModel
    from .mimi import Mimi
    from .model import LoadedModel
    from .quant import convert_for_quant, packing_for, quantizing_converter

    device = torch.device(device)
    # On a GPU the weights are drawn there, in the model's dtype (as a checkpoint's bfloat16 tensors
    # arrive): drawing the released 7.6 G values on the CPU takes most of a minute per build.
    on_gpu = device.type == "cuda"
    gen = torch.Generator(device=device if on_gpu else "cpu").manual_seed(seed)
    draw = dict(device=device, dtype=dtype) if on_gpu else {}
    packing = packing_for(device)
    with untracked():
        float_lm = LMModel(config.lm, device="meta", dtype=dtype)
        shapes = {key: t.shape for key, t in float_lm.state_dict().items()}
        del float_lm
        lm = LMModel(config.lm, device="meta", dtype=dtype)
        convert = quantizing_converter(convert_for_quant(lm, quant, packing), quant, dtype, packing)
    loaded: dict[str, torch.Tensor] = {}
    for key in conversion_order(shapes):
        shape = shapes[key]
        if device.type == "meta":  # shapes only: traces of the released size
            loaded.update(convert(key, torch.empty(shape, device="meta")))
            continue
        if key.endswith("alpha"):
            t = torch.ones(shape, **draw)
        elif "emb" in key.split(".")[0]:
            t = 0.3 * torch.randn(shape, generator=gen, **draw)
        else:
            bound = shape[-1] ** -0.5
            t = torch.empty(shape, **draw).uniform_(-bound, bound, generator=gen)
        loaded.update(convert(key, t.to(device)))
        del t
    lm.load_state_dict(loaded, strict=True, assign=True)
    del loaded
    mimi = Mimi(config.mimi, device=device)
    fill_random_(mimi, seed)
    mimi.refresh_codebooks()
    return LoadedModel(config, mimi.eval(), lm.eval(), None, Path("<random weights>"), device, dtype, quant)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: allocated device memory on CUDA, the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stt_config_like(config: ModelConfig):
    """A speech-to-text configuration for benchmarks of `config`: the released 1B model for the
    released LM, else the same layout at the LM's width (tiny and small benchmark models)."""
    import dataclasses as dc

    from .stt_config import released_stt_config

    released = released_stt_config()
    if config.lm.dim == ModelConfig().lm.dim:
        return released
    lm = dc.replace(released.lm, dim=config.lm.dim, num_heads=config.lm.num_heads, card=config.lm.card,
                    text_card=min(released.lm.text_card, config.lm.text_card))
    return dc.replace(released, lm=lm, mimi=config.mimi)


def random_stt(stt_config, mimi, device: torch.device, dtype: torch.dtype, quant: str = "none", seed: int = 1):
    """A LoadedSTT with random weights beside a model's `mimi` (benchmarks and traces; no tokenizer)."""
    from pathlib import Path

    from .quant import convert_for_quant, packing_for, quantizing_converter
    from .stt import STTModel
    from .stt_load import LoadedSTT

    gen = torch.Generator().manual_seed(seed)
    shapes = {k: t.shape for k, t in STTModel(stt_config.lm, device="meta", dtype=dtype).state_dict().items()}
    model = STTModel(stt_config.lm, device="meta", dtype=dtype)
    packing = packing_for(device)
    convert = quantizing_converter(convert_for_quant(model, quant, packing), quant, dtype, packing)
    loaded: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        if torch.device(device).type == "meta":
            t = torch.empty(shape, device="meta")
        elif key.endswith("alpha"):
            t = torch.ones(shape)
        else:
            t = torch.empty(shape).uniform_(-shape[-1] ** -0.5, shape[-1] ** -0.5, generator=gen)
        loaded.update(convert(key, t.to(device)))
    model.load_state_dict(loaded, strict=True, assign=True)
    return LoadedSTT(stt_config, mimi, model.eval(), None, Path("<random weights>"), torch.device(device), dtype)


__all__ = ["OpCounter", "count_ops", "deep_narrow_config", "fill_random_", "peak_memory",
           "random_model", "small_config"]
