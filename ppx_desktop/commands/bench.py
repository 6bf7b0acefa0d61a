"""`ppx-desktop bench`: how fast one 80 ms frame runs here, and how close to the memory floor.

Times the whole frame step (captured as chosen) and, on the eager path, its three parts (Mimi
encode, LM step, Mimi decode); counts ATen operations per frame; reports peak memory, load and
warm-up time, and on CUDA the achieved memory bandwidth against the device's peak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

FRAME_MS = 80.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", type=Path, help="a model directory (official layout or make-tiny-model)")
    src.add_argument("--config", choices=["tiny", "small", "full"], default=None,
                     help="random weights: tiny (test size), small (released depth, narrow), full (released size)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="LM weights: default bfloat16 on cuda, float32 on cpu")
    p.add_argument("--quant", choices=["none", "int8", "fp8"], default="none", help="weight-only quantisation")
    p.add_argument("--capture", choices=["auto", "off", "compile", "cuda-graph"], default="auto",
                   help="how the frame step runs (auto: cuda-graph on cuda, eager on cpu)")
    p.add_argument("--steps", type=int, default=20, help="timed frames (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--prompt", action="store_true", help="instead: a new conversation's prompt phases, stepwise and "
                   "batched, and a context refresh (commands/bench_prompt.py)")


def _stats(times: list[float]) -> dict:
    import numpy as np

    ms = np.asarray(times) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def _build(args, device, dtype):
    from ..engine.model import load_model
    from ..engine.opcount import random_model, small_config
    from ..engine.tiny import tiny_config

    if args.model_dir is not None:
        return load_model(args.model_dir, device=str(device), dtype=dtype, quant=args.quant)
    from ..engine.config import ModelConfig

    config = {"tiny": tiny_config, "small": small_config, "full": ModelConfig}[args.config or "small"]()
    if device.type == "cpu":
        _check_host_memory(config, dtype, args.quant)
    return random_model(config, device, dtype, args.quant)


def _check_host_memory(config, dtype, quant: str) -> None:
    """On the CPU the model lives in RAM: refuse up front rather than be killed for lack of memory."""
    import os

    from ..engine.quant import estimate_memory

    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not on Linux: no cheap reading, go ahead
        return
    need = estimate_memory(config, dtype, quant)
    if need > available:
        raise ValueError(f"this model needs about {need / 2**30:.1f} GiB of RAM in {str(dtype).removeprefix('torch.')}"
                         f"{'' if quant == 'none' else ' with ' + quant} weights but {available / 2**30:.1f} GiB is "
                         "free: use --dtype bfloat16 (half of float32) or --quant int8, or a smaller --config")


def measure(args) -> dict:
    import numpy as np
    import torch

    from ..engine.config import FRAME_SIZE
    from ..engine.framestep import FrameStep
    from ..engine.generator import Generator
    from ..engine.model import resolve_device, resolve_dtype
    from ..engine.opcount import bytes_per_frame, count_ops, peak_memory
    from ..engine.prompts import run_prompts
    from ..engine.quant import check_quant
    from ..engine.sampling import SamplingConfig

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    check_quant(args.quant, device)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    model = _build(args, device, dtype)
    sync()
    load_s = time.perf_counter() - t0
    gen = Generator(model.lm, SamplingConfig())
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt, silence_frames=2)
    pcm = (0.1 * np.random.default_rng(0).standard_normal(FRAME_SIZE)).astype(np.float32)

    eager = FrameStep(model, gen, capture="off")
    codec = eager.init_codec_state()
    eager(state, codec, pcm)  # the first frame after the prompts runs fewer depformer sub-steps
    ops, _ = count_ops(eager, state, codec, pcm)

    # The three parts, eagerly, each synchronised: where the time goes.
    mimi, parts = model.mimi, {"encode": [], "lm_step": [], "decode": []}
    enc, dec = mimi.init_encoder_state(1), mimi.init_decoder_state(1)
    x = torch.from_numpy(pcm).to(device).view(1, 1, -1)
    for i in range(min(args.steps, 10) + 2):
        marks = [time.perf_counter()]
        codes = mimi.encode_step(x, enc)
        sync()
        marks.append(time.perf_counter())
        out = gen.step(state, user=codes)
        sync()
        marks.append(time.perf_counter())
        mimi.decode_step(out.tokens[:, 1:9], dec)
        sync()
        marks.append(time.perf_counter())
        if i >= 2:  # the first calls pay lazy initialisation
            for name, a, b in zip(parts, marks, marks[1:]):
                parts[name].append(b - a)

    fs = FrameStep(model, gen, capture=args.capture)
    codec = fs.init_codec_state()
    t0 = time.perf_counter()
    fs.warmup(state, codec)
    fs(state, codec, pcm)
    sync()
    warmup_s = time.perf_counter() - t0
    frames = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        fs(state, codec, pcm)  # ends with the frame's D2H copy: synchronised
        frames.append(time.perf_counter() - t0)

    frame = _stats(frames)
    kv = sum(t.numel() * t.element_size() for t in state.lm.keys + state.lm.values)
    read = bytes_per_frame(model.lm, model.mimi, model.config.lm.audio_per_stream, kv)
    result = {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "config": str(args.model_dir) if args.model_dir else (args.config or "small"),
        "dtype": str(dtype).removeprefix("torch."), "quant": args.quant, "capture": fs.capture,
        "steps": args.steps, "frame": frame, **{k: _stats(v) for k, v in parts.items()},
        "real_time_factor": frame["median_ms"] / FRAME_MS, "ops_per_frame": ops,
        "peak_memory_bytes": peak_memory(device), "load_s": load_s, "warmup_s": warmup_s,
        "bytes_read_per_frame": read,
        "lm_params": sum(t.numel() for t in model.lm.state_dict().values()),
    }
    if cuda:
        achieved = read / (frame["median_ms"] / 1000)
        from ..engine.model import device_bandwidth

        peak = device_bandwidth(device)
        result["bandwidth_gb_s"] = achieved / 1e9
        result["bandwidth_fraction"] = achieved / peak if peak else None
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    if args.prompt:
        from .bench_prompt import run as run_prompt

        return run_prompt(args)
    with torch.no_grad():
        result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"device {result['device']}, model {result['config']} ({result['lm_params'] / 1e6:.0f} M LM params), "
          f"{result['dtype']}, quant {result['quant']}, capture {result['capture']}, {result['steps']} frames")
    for name in ("frame", "encode", "lm_step", "decode"):
        s = result[name]
        label = "frame (whole step)" if name == "frame" else f"  {name} (eager)"
        print(f"{label:20s} median {s['median_ms']:8.2f} ms   p95 {s['p95_ms']:8.2f} ms")
    rtf = result["real_time_factor"]
    print(f"real-time factor    {rtf:.2f} ({'faster' if rtf < 1 else 'slower'} than real time)")
    print(f"ops per frame       {result['ops_per_frame']} (eager ATen ops)")
    print(f"peak memory         {result['peak_memory_bytes'] / 2**30:.2f} GiB")
    print(f"load / warm-up      {result['load_s']:.1f} s / {result['warmup_s']:.1f} s")
    print(f"bytes read / frame  {result['bytes_read_per_frame'] / 1e9:.3f} GB")
    if "bandwidth_gb_s" in result:
        frac = result["bandwidth_fraction"]
        print(f"bandwidth           {result['bandwidth_gb_s']:.0f} GB/s"
              + (f" ({100 * frac:.0f} % of the device's peak)" if frac else ""))
    return 0
