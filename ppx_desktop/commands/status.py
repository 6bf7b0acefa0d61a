"""`ppx-desktop status`: what is installed where, what is missing, and whether this machine can talk in real time.

Memory comes from the planner (engine/memory.py: weights, the 3000-frame context cache, codec,
working memory and a CUDA context allowance), in GiB. Speed: a frame moves a measured number of
bytes per precision (engine/framecost.py, the byte trace of one frame), so the GPU's memory
bandwidth sets a floor per 80 ms frame, of which PyTorch reaches roughly 55-70 %.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..assets.hub import DEFAULT_REPO

FRAME_MS = 80.0
GiB = 2**30
# Peak memory bandwidth in GB/s of GPUs people ask about (vendor figures), matched by name.
BANDWIDTH = {
    "H200": 4300, "H100": 3350, "A100": 2040, "RTX 5090": 1790, "RTX 4090": 1010, "RTX 3090 Ti": 1008,
    "RTX 3090": 940, "RTX 5080": 960, "RTX 5070 Ti": 900, "A6000": 768, "L40S": 864, "L40": 864,
    "RTX 4080": 717, "A10G": 600, "A10": 600, "RTX 4070": 500, "L4": 300, "GB10": 273,
}
LOADER_FILES = ("model.safetensors", "tokenizer-e351c8d8-checkpoint125.safetensors", "tokenizer_spm_32k_3.model")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    total: int  # bytes
    free: int


def probe_gpu() -> tuple[GpuInfo | None, str]:
    """The first CUDA device, or None and why not."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return None, f"this PyTorch ({torch.__version__}) is a CPU-only build; install a CUDA build"
        return None, "no NVIDIA GPU is visible (check the driver with nvidia-smi)"
    free, total = torch.cuda.mem_get_info(0)
    return GpuInfo(torch.cuda.get_device_name(0), total, free), ""


def bandwidth_of(name: str) -> float | None:
    for key in sorted(BANDWIDTH, key=len, reverse=True):  # "RTX 3090 Ti" before "RTX 3090"
        if key.lower() in name.lower():
            return BANDWIDTH[key]
    return None


def memory_needs() -> dict[str, int]:
    """GPU bytes the released model needs per precision (engine/memory.py's plan, full context)."""
    from ..engine.config import ModelConfig
    from ..engine.memory import plan_memory

    config = ModelConfig()
    return {p: plan_memory(config, p).total for p in ("bfloat16", "int8", "int4")}


def frame_gb(precision: str) -> float:
    """GB one frame moves with the full context window (measured by the byte trace)."""
    from ..engine.config import ModelConfig
    from ..engine.framecost import frame_bytes

    return frame_bytes(ModelConfig(), precision, 3000) / 1e9


def verdict(gpu: GpuInfo | None, why: str) -> tuple[bool, list[str]]:
    needs = memory_needs()
    need_line = (f"GPU memory needed (4-minute context): bfloat16 about {needs['bfloat16'] / GiB:.1f} GiB, int8 "
                 f"weights about {needs['int8'] / GiB:.1f} GiB, int4 about {needs['int4'] / GiB:.1f} GiB (Ampere or "
                 "newer); a shorter context needs less (--context); with less still, layers stay in host memory "
                 "and only turn-based modes run")
    if gpu is None:
        return False, [f"GPU: none ({why}). The model is far slower than real time on a CPU.", need_line]
    lines = [f"GPU: {gpu.name}, {gpu.free / GiB:.1f} GiB free of {gpu.total / GiB:.1f} GiB", need_line]
    fits = [p for p in ("bfloat16", "int8", "int4") if needs[p] <= gpu.free]
    if not fits:
        line, context = _too_small(gpu)
        lines.append(line)
        if context is None:
            return False, lines
        fits = ["int4"]  # live conversation still runs, with less of it in view
    bw = bandwidth_of(gpu.name)
    if bw is None:
        lines.append(f"precision: {fits[0]} fits; real time: unknown for this GPU (no bandwidth figure); try it")
        return True, lines
    from ..engine.model import ACHIEVED_BANDWIDTH  # the share of peak bandwidth a decoder step reaches

    expected = {p: frame_gb(p) / bw * 1000 / ACHIEVED_BANDWIDTH for p in fits}
    fast = [p for p in fits if expected[p] < FRAME_MS]
    pick = fast[0] if fast else fits[-1]
    floor = frame_gb(pick) / bw * 1000
    weights = "bfloat16 weights" if pick == "bfloat16" else f"{pick} weights (--quant {pick}; the app picks it itself)"
    lines.append(f"real time: {'yes' if fast else 'no'} with {weights} - about {expected[pick]:.0f} ms of work per "
                 f"{FRAME_MS:.0f} ms frame expected (memory-bandwidth floor {floor:.0f} ms at {bw} GB/s)")
    if not fast:
        lines.append("live duplex will lag behind; push-to-talk and hands-free turns work, with a delay")
    return bool(fast), lines


def _too_small(gpu: GpuInfo) -> tuple[str, int | None]:
    """What to say when no precision fits with the full context, and the context that fits int4."""
    import torch

    from ..engine.config import ModelConfig
    from ..engine.memory import fitting_context
    from ..engine.offload import plan_offload

    context = fitting_context(ModelConfig(), "int4", gpu.free)
    if context is not None:
        return (f"not enough free GPU memory for the full 4-minute context: int4 weights fit with --context "
                f"{context} ({context / 750:.1f} minutes in view; the app picks it itself)"), context
    try:
        plan = plan_offload(ModelConfig(), gpu.free, torch.bfloat16, "int4")
        tail = f"turn-based modes only: {plan.summary()}"
    except ValueError:
        tail = "use a larger GPU"
    return f"not enough free GPU memory even for int4 weights: close other programs using the GPU, or {tail}", None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", default=DEFAULT_REPO, help="Hub repository to look for (default: %(default)s)")
    p.add_argument("--model-dir", type=Path, default=None, help="check this model directory instead")


def run(args: argparse.Namespace) -> int:
    from ..assets.hub import check_model_dir, find_model_dir
    from ..paths import voices_dir

    ready = True
    model_dir = args.model_dir or find_model_dir(args.repo)
    if model_dir is None:
        print(f"model: {args.repo} is not downloaded (or not complete). Run `ppx-desktop download`.")
        ready = False
    else:
        print(f"model: {model_dir}")
        missing = []
        for name in LOADER_FILES:
            path = Path(model_dir) / name
            if path.is_file():
                print(f"  {name}: {path.stat().st_size / 1e9:.2f} GB")
            else:
                missing.append(name)
        voices = sorted(p.stem for p in (Path(model_dir) / "voices").glob("*.pt"))
        print(f"  voices: {len(voices)} ({', '.join(voices) or 'none'})")
        if not voices:
            missing.append("voices/*.pt")
        if args.model_dir is None:
            missing += check_model_dir(Path(model_dir), args.repo)
        if missing:
            print("  missing: " + "; ".join(dict.fromkeys(missing)) + " - run `ppx-desktop download`")
            ready = False
    custom = sorted(p.stem for p in voices_dir().glob("*.pt"))
    print(f"custom voices ({voices_dir()}): {', '.join(custom) or 'none'}")
    from ..assets.stt_model import transcription_status

    print("\n".join(transcription_status(Path(model_dir) if model_dir is not None else None)))
    gpu, why = probe_gpu()
    ok, lines = verdict(gpu, why)
    print("\n".join(lines))
    ready = ready and ok
    print("ready to talk" if ready else "not ready")
    return 0 if ready else 1
