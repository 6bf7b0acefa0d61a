"""A loaded PersonaPlex model: config, Mimi codec, language model, tokenizer and voices.

`load_model(model_dir)` checks everything it can before reading gigabytes: the directory, the
files, the config, the devices, then each checkpoint's header against the modules' keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import lm_plan, load_weights
from .config import (
    FRAME_RATE,
    LM_WEIGHTS,
    MIMI_WEIGHTS,
    PPX_CONFIG,
    TEXT_TOKENIZER,
    VOICES_DIR,
    ModelConfig,
    load_model_config,
)
from .lm import LMModel
from .mimi import Mimi
from .offload import LayerStreamer, OffloadPlan, plan_offload
from .prompts import VoiceError, VoicePrompt, load_voice_audio, load_voice_file, max_voice_seconds

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}


class ModelError(ValueError):
    """The model directory or the requested device cannot be used; the message says what to do."""


def resolve_device(device: str | None) -> torch.device:
    """`None` picks CUDA when available, else the CPU. Asking for CUDA without it is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        if torch.version.cuda is None:
            why = f"this PyTorch ({torch.__version__}) is a CPU-only build; install a CUDA build of torch"
        else:
            why = "no NVIDIA GPU is visible (check the driver with nvidia-smi)"
        raise ModelError(f"CUDA was requested but is not available: {why}. Use --device cpu to run on the CPU "
                         "(far slower than real time for the full model).")
    if dev.type not in ("cuda", "cpu"):
        raise ModelError(f"unsupported device {device!r}: use cuda or cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The LM's dtype: bfloat16 on CUDA and float32 on the CPU unless asked otherwise."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelError(f"unsupported dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


@dataclass
class LoadedModel:
    config: ModelConfig
    mimi: Mimi
    lm: LMModel
    tokenizer: object  # TextTokenizer
    model_dir: Path
    device: torch.device
    dtype: torch.dtype
    quant: str = "none"

    @property
    def voices_dir(self) -> Path:
        return self.model_dir / VOICES_DIR

    def available_voices(self) -> list[str]:
        if not self.voices_dir.is_dir():
            return []
        return sorted(p.stem for p in self.voices_dir.glob("*.pt"))

    def resolve_voice(self, spec: str) -> Path:
        """A preset name (`DIR/voices/NAME.pt`) or a path to a `.pt` voice or an audio file."""
        path = Path(spec).expanduser()
        if path.suffix and path.is_file():
            return path
        preset = self.voices_dir / f"{spec}.pt"
        if preset.is_file():
            return preset
        available = self.available_voices()
        listing = ", ".join(available) if available else f"none found in {self.voices_dir}"
        raise VoiceError(f"unknown voice {spec!r}: not a file and not a preset. Available voices: {listing}")

    def load_voice(self, spec: str | Path) -> VoicePrompt:
        """A voice by preset name or path, checked against this model (width, cards, cache size).
        Custom voices by name: `assets.voices.open_voice`, which knows the user's folder."""
        path = self.resolve_voice(str(spec))
        if path.suffix.lower() == ".pt":
            lm = self.config.lm
            return load_voice_file(path, dim=lm.dim, num_streams=lm.num_streams, card=lm.card,
                                   text_card=lm.text_card, columns=lm.max_delay + 3)
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            kinds = ", ".join(sorted(AUDIO_SUFFIXES))
            raise VoiceError(f"{path}: a voice is a .pt voice file or an audio file ({kinds})")
        return load_voice_audio(path, max_voice_seconds(self.config))


def check_device_memory(config: ModelConfig, device: torch.device, dtype: torch.dtype, quant: str,
                        offload: OffloadPlan | None = None, reserve: int = 0) -> None:
    """Raises ModelError if the GPU's free memory is below the memory plan, naming a precision or a
    context length that fits, or else how many layers to keep in host memory."""
    from .memory import plan_memory, precision_name

    if device.type != "cuda":
        return
    free = torch.cuda.mem_get_info(device)[0] - reserve
    need = plan_memory(config, precision_name(dtype, quant)).total
    if offload is not None and offload.layers:  # those layers stay on the host; two staging sets do not
        need -= (len(offload.layers) - min(2, len(offload.layers))) * offload.layer_bytes
    if need <= free:
        return
    raise ModelError(memory_advice(config, device, dtype, quant, need, free))


def memory_advice(config: ModelConfig, device: torch.device, dtype: torch.dtype, quant: str, need: int,
                  free: int) -> str:
    """What to say when `need` bytes do not fit in `free`: a precision that fits, else a shorter
    context, else offloading layers."""
    from .memory import GiB, fitting_context, precision_name
    from .quant import available_quants

    chosen = precision_name(dtype, quant)
    head = f"{chosen} needs about {need / GiB:.1f} GiB of GPU memory but only {free / GiB:.1f} GiB is free"
    fits = fitting_precisions(config, free, device)
    if fits:
        return f"{head}: use {' or '.join(fits)} (--quant {'none' if fits[0] == 'bfloat16' else fits[0]})"
    smallest = available_quants(device)[-1]
    context = fitting_context(config, smallest, free)
    if context is not None:
        return (f"{head}, and no precision fits with the full {config.lm.context}-frame context. Close other "
                f"programs using the GPU, or keep a shorter context: --quant {smallest} --context {context} "
                f"({context / FRAME_RATE / 60:.1f} minutes of conversation in view)")
    try:
        plan = plan_offload(config, free, torch.bfloat16, smallest)
    except ValueError:
        return f"{head}: no precision fits, even with layers in host memory: use a GPU with more memory"
    return (f"{head}, and no precision fits entirely. Close other programs using the GPU, or keep layers in "
            f"host memory: --quant {smallest} --offload-layers {len(plan.layers)}. {plan.summary()}")


def fitting_precisions(config: ModelConfig, free_bytes: int, device: torch.device, context: int | None = None
                       ) -> list[str]:
    """The precisions ("bfloat16", "int8", "int4") whose memory plan fits in `free_bytes`, largest first."""
    from .memory import plan_memory
    from .quant import available_quants

    names = ["bfloat16" if q == "none" else q for q in available_quants(device)]
    return [p for p in names if plan_memory(config, p, context, "cuda").total <= free_bytes]  # GPU memory


# Share of the peak memory bandwidth a decoder step achieves in practice (60-70 % is typical);
# below what the model's bytes per frame need at that share, a frame cannot keep 80 ms.
ACHIEVED_BANDWIDTH = 0.6


def device_bandwidth(device: torch.device) -> float | None:
    """Peak DRAM bandwidth of a CUDA device in bytes/s from its properties (None if unknown)."""
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1000 * bus_bits / 8 if clock_khz and bus_bits else None


def keeps_real_time(config: ModelConfig, precision: str, bandwidth: float | None) -> bool:
    """Whether a GPU of peak `bandwidth` can move one frame of `precision` (measured bytes, full
    context window) within 80 ms at the usual achieved share; unknown bandwidth counts as yes."""
    from .framecost import frame_bytes

    if bandwidth is None:
        return True
    return frame_bytes(config, precision, config.lm.context) * FRAME_RATE <= ACHIEVED_BANDWIDTH * bandwidth


def choose_quant(config: ModelConfig, dtype: torch.dtype, free_bytes: int, bandwidth: float | None = None,
                 int4: bool = True) -> str:
    """`quant="auto"` on a GPU: the first of bfloat16, int8, int4 (if the GPU runs it) that fits in
    `free_bytes` and, with the device's peak `bandwidth` known, can be read within a frame; of
    those that fit but are too slow, the fastest; when none fits, the smallest (offloading or a
    shorter context completes it)."""
    from .memory import plan_memory

    kinds = ["none", "int8", "int4"] if int4 else ["none", "int8"]
    names = {q: ("bfloat16" if q == "none" else q) for q in kinds}
    fitting = [q for q in kinds if plan_memory(config, names[q]).total <= free_bytes]
    for q in fitting:
        if keeps_real_time(config, names[q], bandwidth):
            return q
    return fitting[-1] if fitting else kinds[-1]


def host_memory_available() -> int | None:
    """Bytes of RAM free now (Linux; None where there is no cheap reading)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_host_memory(config: ModelConfig, dtype: torch.dtype, quant: str, source: str = "this model") -> None:
    """On the CPU the model lives in RAM: refuse up front rather than be killed for lack of memory."""
    from .memory import GiB, plan_memory, precision_name

    available = host_memory_available()
    if available is None:
        return
    need = plan_memory(config, precision_name(dtype, quant), device_type="cpu").device_bytes
    if need > available:
        raise ModelError(f"{source} needs about {need / GiB:.1f} GiB of RAM in {str(dtype).removeprefix('torch.')}"
                         f"{'' if quant == 'none' else ' with ' + quant} weights but {available / GiB:.1f} GiB is "
                         "free: use --dtype bfloat16 (half of float32) or --quant int8, or a smaller model")


def _free(device: torch.device, reserve: int) -> int:
    return torch.cuda.mem_get_info(device)[0] - reserve


def _fit_context(config: ModelConfig, dtype: torch.dtype, quant: str, free: int) -> ModelConfig:
    """The config with the longest context that fits `free` in this precision (unchanged if the
    full one fits, or if none from one minute up does: offloading takes over then)."""
    import logging

    from .memory import fitting_context, plan_memory, precision_name

    name = precision_name(dtype, quant)
    if plan_memory(config, name).total <= free:
        return config
    context = fitting_context(config, name, free)
    if context is None or context >= config.lm.context:
        return config
    logging.getLogger(__name__).info("context shortened to %d frames to fit %s in %.1f GiB", context, name,
                                     free / 2**30)
    return config.with_context(context)


def check_model_files(model_dir: Path) -> Path:
    """The directory, if it holds the model's files and they can be read; else a ModelError."""
    try:
        if not model_dir.is_dir():
            raise ModelError(f"model directory not found: {model_dir}")
        missing = [name for name in (LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER) if not (model_dir / name).is_file()]
        unreadable = [name for name in (LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER, PPX_CONFIG) if name not in missing
                      and (model_dir / name).exists() and not os.access(model_dir / name, os.R_OK)]
    except OSError as exc:  # a folder without read or search permission fails inside stat
        raise ModelError(f"cannot read the model directory {model_dir} ({exc.strerror or exc}): check its "
                         "permissions (ls -ld), or point --model-dir at a folder you can read") from exc
    if missing:
        raise ModelError(f"{model_dir} is not a complete model directory: missing {', '.join(missing)}. "
                         "Download the model (nvidia/personaplex-7b-v1) or point --model-dir at it.")
    if unreadable:
        raise ModelError(f"cannot read {', '.join(unreadable)} in {model_dir}: check the files' permissions")
    return model_dir


def load_model(model_dir: str | Path, device: str | None = None, dtype: str | torch.dtype | None = None,
               *, quant: str = "none", check_memory: bool = True, offload_layers: int | None = 0,
               context: int | None = None, max_context: int | None = None, reserve: int = 0) -> LoadedModel:
    """Loads a model directory; `quant` ("none", "int8", "int4") quantises the LM's linear layers
    tensor by tensor while loading (the full-precision LM never exists on the device); "auto"
    picks the best that fits the GPU's free memory (`choose_quant`), "none" on the CPU.

    `offload_layers` temporal layers stay in host memory and stream to the GPU every frame
    (offload.py; turn-based only); None: as many as the GPU's free memory requires (maybe none).
    `context` shortens the temporal context (frames of conversation in view) to save memory;
    `max_context` caps it (the app's setting, for models of any context). With `quant="auto"` on a
    GPU where even the smallest precision does not fit with the context asked for, the longest
    context that fits is taken (before resorting to layers in host memory). `reserve` bytes of the
    GPU's free memory are left for something else (the speech-to-text model).
    """
    from ..assets.tokenizer import TextTokenizer
    from .config import ConfigError
    from .quant import QuantError, available_quants, check_quant, convert_for_quant, packing_for, quantizing_converter

    model_dir = check_model_files(Path(model_dir).expanduser())
    config = load_model_config(model_dir)
    if context is None and max_context is not None:
        context = min(max_context, config.lm.context)
    try:
        config = config.with_context(context)
    except ConfigError as exc:
        raise ModelError(str(exc)) from exc
    dev = resolve_device(device)
    lm_dtype = resolve_dtype(dtype, dev)
    if quant == "auto":
        quant = "none" if dev.type != "cuda" else choose_quant(config, lm_dtype, _free(dev, reserve),
                                                               device_bandwidth(dev), "int4" in available_quants(dev))
        if dev.type == "cuda":
            config = _fit_context(config, lm_dtype, quant, _free(dev, reserve))
    try:
        check_quant(quant, dev)
    except QuantError as exc:
        raise ModelError(str(exc)) from exc
    plan = None
    if offload_layers != 0 and dev.type == "cuda":
        try:
            plan = plan_offload(config, _free(dev, reserve), lm_dtype, quant, layers=offload_layers)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
    elif offload_layers:
        raise ModelError("--offload-layers keeps layers in host memory for a GPU: it needs --device cuda")
    if check_memory:  # before anything is built: an absurd config file is refused here
        if dev.type == "cuda":
            check_device_memory(config, dev, lm_dtype, quant, plan, reserve)
        else:
            check_host_memory(config, lm_dtype, quant, source=f"the model in {model_dir}")
    tokenizer = TextTokenizer.load(model_dir / TEXT_TOKENIZER)
    if tokenizer.vocab_size != config.lm.text_card:
        raise ModelError(f"{model_dir / TEXT_TOKENIZER} has {tokenizer.vocab_size} pieces but the model expects "
                         f"{config.lm.text_card} (check {PPX_CONFIG})")
    # Modules are built on the meta device (no memory, no init) and filled tensor by tensor.
    mimi = Mimi(config.mimi, device="meta")
    load_weights(mimi, model_dir / MIMI_WEIGHTS, device=dev, dtype=torch.float32)  # Mimi always runs in fp32
    lm = LMModel(config.lm, device="meta", dtype=lm_dtype)
    on_host = plan.keeps_on_host if plan is not None and plan.layers else None
    if quant == "none":
        load_weights(lm, model_dir / LM_WEIGHTS, device=dev, dtype=lm_dtype, plan_fn=lm_plan, on_host=on_host)
    else:
        qlm = LMModel(config.lm, device="meta", dtype=lm_dtype)
        packing = packing_for(dev)
        qplan = convert_for_quant(qlm, quant, packing)
        load_weights(lm, model_dir / LM_WEIGHTS, device=dev, dtype=lm_dtype, plan_fn=lm_plan,
                     convert=quantizing_converter(qplan, quant, lm_dtype, packing), target=qlm, on_host=on_host)
        lm = qlm
    if on_host is not None:
        LayerStreamer(lm, plan, dev)
    return LoadedModel(config, mimi.eval(), lm.eval(), tokenizer, model_dir, dev, lm_dtype, quant)
