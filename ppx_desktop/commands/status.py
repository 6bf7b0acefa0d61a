"""`ppx-desktop status`: what is installed where, what is missing, and whether this machine can talk in real time.

The verdict comes from known figures (/work/shared/research/performance.md): bfloat16 weights take
16.7 GB, the 3000-frame KV cache 1.6 GB and the codec under 1 GB, so about 20 GB of free GPU
memory; a frame (80 ms) reads about 16.7 GB, so memory bandwidth sets a floor per frame, and
PyTorch reaches roughly 55-70 % of it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..assets.hub import DEFAULT_REPO

FRAME_MS = 80.0
# Bytes read per frame: weights (the depformer reads 8 of its 16 steps' weights) plus the KV cache;
# int8 halves the linear layers, embeddings and the cache stay in bfloat16.
BYTES_PER_FRAME_GB = {"bfloat16": 16.66, "int8": 9.3}
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
    """GPU bytes the released model needs per precision (engine/quant.py estimate_memory)."""
    import torch

    from ..engine.config import ModelConfig
    from ..engine.quant import estimate_memory

    config = ModelConfig()
    return {"bfloat16": estimate_memory(config, torch.bfloat16, "none"),
            "int8": estimate_memory(config, torch.bfloat16, "int8")}


def verdict(gpu: GpuInfo | None, why: str) -> tuple[bool, list[str]]:
    needs = memory_needs()
    need_line = (f"GPU memory needed: bfloat16 about {needs['bfloat16'] / 1e9:.1f} GB, int8 weights about "
                 f"{needs['int8'] / 1e9:.1f} GB (fp8 the same, on Ada or newer GPUs); with less, layers stay in "
                 "host memory and only turn-based modes run")
    if gpu is None:
        return False, [f"GPU: none ({why}). The model is far slower than real time on a CPU.", need_line]
    lines = [f"GPU: {gpu.name}, {gpu.free / 1e9:.1f} GB free of {gpu.total / 1e9:.1f} GB", need_line]
    fits = [p for p in ("bfloat16", "int8") if needs[p] <= gpu.free]
    if not fits:
        import torch

        from ..engine.config import ModelConfig
        from ..engine.offload import plan_offload

        try:
            plan = plan_offload(ModelConfig(), gpu.free, torch.bfloat16, "int8")
            tail = f"turn-based modes only: {plan.summary()}"
        except ValueError:
            tail = "use a larger GPU"
        lines.append(f"not enough free GPU memory even for int8 weights: close other programs using the GPU, or {tail}")
        return False, lines
    bw = bandwidth_of(gpu.name)
    if bw is None:
        lines.append(f"precision: {fits[0]} fits; real time: unknown for this GPU (no bandwidth figure); try it")
        return True, lines
    from ..engine.model import ACHIEVED_BANDWIDTH  # the share of peak bandwidth a decoder step reaches

    expected = {p: BYTES_PER_FRAME_GB[p] / bw * 1000 / ACHIEVED_BANDWIDTH for p in fits}
    fast = [p for p in fits if expected[p] < FRAME_MS]
    pick = fast[0] if fast else fits[-1]
    floor = BYTES_PER_FRAME_GB[pick] / bw * 1000
    weights = "bfloat16 weights" if pick == "bfloat16" else "int8 weights (--quant int8; the app picks it itself)"
    lines.append(f"real time: {'yes' if fast else 'no'} with {weights} - about {expected[pick]:.0f} ms of work per "
                 f"{FRAME_MS:.0f} ms frame expected (memory-bandwidth floor {floor:.0f} ms at {bw} GB/s)")
    if not fast:
        lines.append("live duplex will lag behind; push-to-talk and hands-free turns work, with a delay")
    return bool(fast), lines


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
