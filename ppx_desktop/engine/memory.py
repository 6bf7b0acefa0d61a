"""The GPU memory plan: what a conversation needs at its peak, per precision and context length.

One model, used everywhere a memory figure is shown or a choice is made (load checks, `status`,
the first-run GPU check, automatic precision, the Settings text, the out-of-memory advice), in
GiB everywhere. Parts:

- weights: every LM tensor in the chosen precision (built on the meta device, so the sizes are
  the real modules', rounded like the CUDA caching allocator rounds them);
- kv_cache: the temporal ring of `context` frames per layer (plus the depformer's and the token
  ring), the dominant knob: 0.49 GiB per 1000 frames in bfloat16 at the released size;
- mimi: the codec in float32, its codebook caches and both streaming states;
- working: the largest transient on top of a running conversation: the captured frame's
  activations (one graph pool), capture snapshots, or a batched prompt prefill or context
  refresh (engine/prefill.py's bound);
- load_transient: how far loading goes above the final weights (a tensor being quantised, in
  checkpoint order); it comes before the context cache exists, so it matters for short contexts;
- cuda_context: an allowance for the CUDA context and library workspaces (1 GiB), which PyTorch
  does not count in its own statistics.

Measured against the live-bytes tracker (memtrack.py) over load, warm-up and capture, frames, a
second conversation and a voice creation of the released model on the meta device: the plan's
device part covers the measured peak and lies within 10 % of it (tests/engine/test_memory.py).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch

from .memtrack import round_allocation

GiB = 2**30
CUDA_CONTEXT = 1 * GiB
PRECISIONS = {"bfloat16": (torch.bfloat16, "none"), "int8": (torch.bfloat16, "int8"),
              "int4": (torch.bfloat16, "int4"), "float32": (torch.float32, "none")}


def precision_name(dtype: torch.dtype, quant: str) -> str:
    return quant if quant != "none" else str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a conversation needs on its device at its peak (see the module docstring)."""

    precision: str
    context: int
    weights: int
    kv_cache: int
    mimi: int
    working: int
    load_transient: int  # above the final weights, at the worst point of loading
    cuda_context: int
    transcription: int = 0  # the speech-to-text model beside the LM (weights and its cache), if on

    @property
    def device_bytes(self) -> int:
        """What the caching allocator holds at the peak (the part a tracker can measure)."""
        running = self.weights + self.kv_cache + self.mimi + self.working + self.transcription
        return max(running, self.weights + self.mimi + self.load_transient + self.transcription)

    @property
    def total(self) -> int:
        return self.device_bytes + self.cuda_context

    @property
    def total_gib(self) -> float:
        return self.total / GiB

    def parts_gib(self) -> dict[str, float]:
        return {"weights": self.weights / GiB, "kv_cache": self.kv_cache / GiB, "mimi": self.mimi / GiB,
                "working": self.working / GiB, "transcription": self.transcription / GiB,
                "cuda_context": self.cuda_context / GiB, "total": self.total_gib}

    def summary(self) -> str:
        p = self.parts_gib()
        return (f"{self.precision}, context {self.context} frames ({self.context / 12.5 / 60:.1f} min): "
                f"{p['total']:.1f} GiB = weights {p['weights']:.1f} + context cache {p['kv_cache']:.2f} + "
                f"codec {p['mimi']:.2f} + working {p['working']:.2f} + CUDA context {p['cuda_context']:.1f}"
                + (f" + transcription {p['transcription']:.2f}" if self.transcription else ""))


def _rounded(tensors) -> int:
    return sum(round_allocation(t.numel() * t.element_size()) for t in tensors)


@functools.lru_cache(maxsize=64)
def _plan(config, precision: str, context: int, device_type: str) -> MemoryPlan:
    from .generator import Generator
    from .lm import LMModel
    from .mimi import Mimi
    from .prefill import prefill_activation_bytes
    from .quant import convert_for_quant
    from .sampling import SamplingConfig

    dtype, quant = PRECISIONS[precision]
    cfg = dataclasses.replace(config.lm, context=context)
    lm = LMModel(cfg, device="meta", dtype=dtype)
    qplan = convert_for_quant(lm, quant, "cuda" if device_type == "cuda" else "cpu")
    weights = _rounded(lm.state_dict().values())
    gen = Generator(lm, SamplingConfig())
    state = gen.init_state(1)
    kv = _rounded([*state.lm.keys, *state.lm.values, *state.dep.keys, *state.dep.values, state.cache,
                   state.provided])
    mimi = Mimi(config.mimi, device="meta")
    enc, dec = mimi.init_encoder_state(1), mimi.init_decoder_state(1)
    mimi_bytes = _rounded([*mimi.parameters(), *mimi.buffers(), *_tensors(enc), *_tensors(dec)])
    act = dtype.itemsize
    # One frame's live activations at batch 1, as the capture's pool keeps them: per layer a few
    # rows of the widest tensors (FFN hidden, attention scores over the window), the text logits
    # in float32, and Mimi's convolution activations (64 filters x 1920 samples in float32, twice).
    layer = 4 * (2 * cfg.hidden_dim + 4 * cfg.dim) * act + 2 * cfg.num_heads * context * 4
    frame = 2 * layer + 6 * cfg.text_card * 4 + 4 * config.mimi.seanet.n_filters * 1920 * 4 + 8 * 2**20
    snapshots = 3 * 2 * cfg.num_layers * cfg.dim * act + _rounded([*_tensors(enc), *_tensors(dec)])
    # A batched prompt prefill or context refresh (engine/prefill.py), chunk by chunk; a custom
    # voice needs no transformer pass at all (Prefiller.voice_file).
    prefill = prefill_activation_bytes(cfg, dtype=dtype, positions=context)
    working = frame + max(snapshots + frame, prefill)
    load = _load_peak(lm, qplan, quant, cfg, dtype, device_type) - weights
    return MemoryPlan(precision, context, weights, kv, mimi_bytes, working, max(load, 0),
                      CUDA_CONTEXT if device_type == "cuda" else 0)


def _tensors(state) -> list[torch.Tensor]:
    """Every tensor of a (nested) dataclass state."""
    out = []
    for value in (vars(state).values() if hasattr(state, "__dict__") else state):
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, (list, tuple)) or dataclasses.is_dataclass(value):
            out.extend(_tensors(value))
    return out


def conversion_transient(numel: int, quant: str, device_type: str = "cuda") -> int:
    """Device bytes alive while one checkpoint tensor of `numel` weights is converted, on top of
    what is loaded: the file's bfloat16 tensor, then for quantised layers the codes (kept whole
    and concatenated: 2 bytes per weight) and each chunk's float32 temporaries (4 live at once
    for int8, 10 for int4's search). Measured on the meta device for the largest layers
    (tests/engine/test_memory.py)."""
    from .int4 import _CHUNK_ELEMENTS as INT4_CHUNK
    from .int4 import _CPU_CHUNK_ELEMENTS as INT4_CPU_CHUNK
    from .int8 import _CHUNK_ELEMENTS as INT8_CHUNK

    file_tensor = round_allocation(numel * 2)
    if quant == "int4":
        chunk = min(numel, INT4_CPU_CHUNK if device_type == "cpu" else INT4_CHUNK)
        return file_tensor + 2 * round_allocation(numel) + 10 * round_allocation(chunk * 4)
    if quant == "int8":
        return file_tensor + 2 * round_allocation(numel) + 4 * round_allocation(min(numel, INT8_CHUNK) * 4)
    return 0  # cast straight from the memory-mapped file into its place


def _load_peak(lm, plan: dict[str, tuple[str, int]], quant: str, config, dtype, device_type: str) -> int:
    """The most the LM holds while loading: tensor by tensor in the loader's order (largest first
    when converting), what is loaded so far plus the conversion under way."""
    from .checkpoint import conversion_order
    from .lm import LMModel

    converted = lm.state_dict()
    shapes = {k: tuple(t.shape) for k, t in LMModel(config, device="meta", dtype=dtype).state_dict().items()}
    done = peak = 0
    for key in conversion_order(shapes) if plan else shapes:
        numel = 1
        for d in shapes[key]:
            numel *= d
        if key in plan:
            prefix = plan[key][0]
            size = _rounded(v for k, v in converted.items() if k.startswith(prefix) and "." not in k[len(prefix):])
            peak = max(peak, done + conversion_transient(numel, quant, device_type))
        else:
            size = _rounded([converted[key]])
        done += size
        peak = max(peak, done)
    return peak


def plan_memory(config, precision: str = "bfloat16", context: int | None = None,
                device_type: str = "cuda", stt=None) -> MemoryPlan:
    """The memory plan of `config` (a ModelConfig) in `precision` ("bfloat16", "int8", "int4",
    "float32") with a KV cache of `context` frames (default: the model's); `stt` (an STTConfig)
    adds the speech-to-text model in the same precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    plan = _plan(config, precision, context or config.lm.context, device_type)
    if stt is not None:
        plan = dataclasses.replace(plan, transcription=transcription_bytes(stt, precision, device_type))
    return plan


@functools.lru_cache(maxsize=16)
def transcription_bytes(stt, precision: str, device_type: str = "cuda") -> int:
    """Device bytes of the speech-to-text model (engine/stt.py) in `precision`: its weights as the
    modules hold them and its streaming state (its Mimi is the LM's, shared)."""
    from .quant import convert_for_quant
    from .stt import STTGenerator, STTModel

    dtype, quant = PRECISIONS[precision]
    model = STTModel(stt.lm, device="meta", dtype=dtype)
    convert_for_quant(model, quant, "cuda" if device_type == "cuda" else "cpu")
    state = STTGenerator(model).init_state(1)
    return _rounded([*model.state_dict().values(), state.tokens, *state.lm.keys, *state.lm.values])


def fitting_context(config, precision: str, free_bytes: int, device_type: str = "cuda",
                    minimum: int = 750) -> int | None:
    """The longest context (in whole 250-frame steps, 20 s) whose plan fits `free_bytes`, or None
    if even `minimum` frames do not fit."""
    best = None
    for context in range(minimum, config.lm.context + 1, 250):
        if plan_memory(config, precision, context, device_type).total <= free_bytes:
            best = context
    full = plan_memory(config, precision, None, device_type)
    return config.lm.context if full.total <= free_bytes else best
