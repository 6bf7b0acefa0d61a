"""`ppx-desktop bench`: how fast one 80 ms frame runs here, what it moves, and what memory it needs.

- Default: times the whole frame step (captured as chosen) and, eagerly, its three parts (Mimi
  encode, LM step, Mimi decode) within the same frames, so the parts add up to the frame; counts
  kernels and traces the bytes one frame moves (`bytes_per_frame`, engine/bytetrace.py).
- `--config layer`: one released-width temporal layer step and one depformer sub-step
  (engine/layerslice.py) per precision, in seconds on any CPU: the precisions' ratios.
- `--memory`: load, warm-up and capture, frames, a second conversation and a custom voice under
  the live-bytes tracker (on `--device meta` for the released size without its memory): the
  measured peak against the planner's figure (session/memoryflow.py).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

FRAME_MS = 80.0
QUANTS = ("none", "int8", "int4")


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model-dir", type=Path, help="a model directory (official layout or make-tiny-model)")
    src.add_argument("--config", choices=["tiny", "small", "full", "layer"], default=None,
                     help="random weights: tiny (test size), small (released depth, narrow), full (released "
                          "size), layer (one released-width temporal layer and depformer sub-step)")
    p.add_argument("--device", choices=["cpu", "cuda", "meta"], default=None,
                   help="default: cuda when available; meta only with --memory (no memory needed)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="LM weights: default bfloat16 on cuda, float32 on cpu")
    p.add_argument("--quant", choices=QUANTS, default="none", help="weight-only quantisation of the linear layers")
    p.add_argument("--capture", choices=["auto", "off", "compile", "cuda-graph"], default="auto",
                   help="how the frame step runs (auto: cuda-graph on cuda, eager on cpu)")
    p.add_argument("--context", type=int, default=None, help="temporal context in frames (default: the model's)")
    p.add_argument("--kv-slots", type=int, default=750,
                   help="--config layer: KV cache slots attention reads (750: the first minute; 3000: full)")
    p.add_argument("--transcribe", action="store_true",
                   help="with the speech-to-text model in the frame (the user's transcript; random weights of its "
                        "released size for --config full)")
    p.add_argument("--memory", action="store_true",
                   help="measure the peak memory of a whole session against the memory planner")
    p.add_argument("--steps", type=int, default=20, help="timed frames (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--prompt", action="store_true", help="instead: a new conversation's prompt phases, stepwise and "
                   "batched, and a context refresh (commands/bench_prompt.py)")
    from .bench_turns import add_arguments as end_of_turn_arguments

    end_of_turn_arguments(p)


def _stats(times: list[float]) -> dict:
    import numpy as np

    ms = np.asarray(times) * 1000
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def _config(args):
    from ..engine.config import ModelConfig
    from ..engine.opcount import small_config
    from ..engine.tiny import tiny_config

    config = {"tiny": tiny_config, "small": small_config, "full": ModelConfig}[args.config or "small"]()
    return config.with_context(args.context)


def _build(args, device, dtype):
    from ..engine.model import check_host_memory, load_model
    from ..engine.opcount import random_model

    if args.model_dir is not None:
        return load_model(args.model_dir, device=str(device), dtype=dtype, quant=args.quant, context=args.context)
    config = _config(args)
    if device.type == "cpu":
        check_host_memory(config, dtype, args.quant, source=f"--config {args.config or 'small'}")
    return random_model(config, device, dtype, args.quant)


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args) -> dict:
    """The whole-frame benchmark (see the module docstring)."""
    import numpy as np
    import torch

    from ..engine.bytetrace import trace_bytes
    from ..engine.config import FRAME_SIZE
    from ..engine.framestep import FrameStep
    from ..engine.generator import Generator
    from ..engine.model import resolve_device, resolve_dtype
    from ..engine.opcount import peak_memory
    from ..engine.prompts import run_prompts
    from ..engine.quant import check_quant
    from ..engine.sampling import SamplingConfig

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    check_quant(args.quant, device)
    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    model = _build(args, device, dtype)
    _sync(device)
    load_s = time.perf_counter() - t0
    gen = Generator(model.lm, SamplingConfig())
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt, silence_frames=2)
    pcm = (0.1 * np.random.default_rng(0).standard_normal(FRAME_SIZE)).astype(np.float32)

    transcriber = _transcriber(args, model, device, dtype)
    eager = FrameStep(model, gen, capture="off", transcriber=transcriber)
    codec = eager.init_codec_state()
    eager(state, codec, pcm)  # the first frame after the prompts runs fewer depformer sub-steps
    trace = trace_bytes(eager, state, codec, pcm)  # one whole frame, its two host copies included

    # The three parts, eagerly, each synchronised, within the same frames: they add up to the frame.
    parts = {"encode": [], "lm_step": [], "decode": []}
    whole = []
    for i in range(min(args.steps, 10) + 2):
        _result, times = eager.timed(state, codec, pcm)
        if i >= 2:  # the first calls pay lazy initialisation
            for name, t in zip(parts, times):
                parts[name].append(t)
            whole.append(sum(times))

    fs = FrameStep(model, gen, capture=args.capture, transcriber=transcriber)
    codec = fs.init_codec_state()
    t0 = time.perf_counter()
    fs.warmup(state, codec)
    fs(state, codec, pcm)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    frames = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        fs(state, codec, pcm)  # ends with the frame's D2H copy: synchronised
        frames.append(time.perf_counter() - t0)

    frame = _stats(frames)
    result = {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "config": str(args.model_dir) if args.model_dir else (args.config or "small"),
        "dtype": str(dtype).removeprefix("torch."), "quant": args.quant, "capture": fs.capture,
        "transcription": transcriber is not None,
        "steps": args.steps, "frame": frame, "ms_per_frame": frame["median_ms"],
        "eager_frame": _stats(whole), **{k: _stats(v) for k, v in parts.items()},
        "real_time_factor": frame["median_ms"] / FRAME_MS, "ops_per_frame": len(trace.kernels),
        "bytes_per_frame": trace.total, "bytes_read_per_frame": trace.read,
        "peak_memory_bytes": peak_memory(device), "load_s": load_s, "warmup_s": warmup_s,
        "lm_params": sum(t.numel() for t in model.lm.state_dict().values()),
    }
    if fs.fallback_reason:
        result["capture_fallback"] = fs.fallback_reason
    if cuda:
        from ..engine.model import device_bandwidth

        achieved = trace.total / (frame["median_ms"] / 1000)
        peak = device_bandwidth(device)
        result["bandwidth_gb_s"] = achieved / 1e9
        result["bandwidth_fraction"] = achieved / peak if peak else None
    return result


def _transcriber(args, model, device, dtype):
    """`--transcribe`: the speech-to-text model in the frame (the model folder's stt/, else random
    weights of the configuration's size)."""
    if not args.transcribe:
        return None
    from ..engine.opcount import random_stt, stt_config_like
    from ..engine.stt_load import load_stt
    from ..engine.transcriber import Transcriber

    if args.model_dir is not None and (args.model_dir / "stt").is_dir():
        return Transcriber(load_stt(args.model_dir / "stt", device=str(device), dtype=dtype, quant=args.quant))
    return Transcriber(random_stt(stt_config_like(model.config), model.mimi, device, dtype, args.quant))


def measure_layer(args) -> dict:
    """`--config layer`: one released-width temporal layer step and depformer sub-step."""
    import torch

    from ..engine.bytetrace import trace_bytes
    from ..engine.layerslice import build_slice, released_lm_config
    from ..engine.model import resolve_device, resolve_dtype
    from ..engine.quant import check_quant

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    check_quant(args.quant, device)
    cfg = released_lm_config(args.context)
    if not 1 <= args.kv_slots <= cfg.context:
        raise ValueError(f"--kv-slots must be between 1 and the context ({cfg.context})")
    t0 = time.perf_counter()
    layer = build_slice(cfg, device, dtype, args.quant)
    build_s = time.perf_counter() - t0
    state = layer.init_state(args.kv_slots)
    x = 0.1 * torch.randn(1, 1, cfg.dim, device=device, dtype=dtype)
    token = torch.zeros(1, dtype=torch.long, device=device)
    for _ in range(2):  # lazy initialisation
        layer.step(x, token, state, args.kv_slots)
    trace = trace_bytes(layer.step, x, token, state, args.kv_slots)
    times = []
    for _ in range(args.steps):
        _sync(device)
        t0 = time.perf_counter()
        layer.step(x, token, state, args.kv_slots)
        _sync(device)
        times.append(time.perf_counter() - t0)
    stats = _stats(times)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)",
        "config": "layer", "dtype": str(dtype).removeprefix("torch."), "quant": args.quant, "steps": args.steps,
        "kv_slots": args.kv_slots, "ms_per_frame": stats["median_ms"], "p95_ms": stats["p95_ms"],
        "bytes_per_frame": trace.total, "bytes_read_per_frame": trace.read, "kernels": len(trace.kernels),
        "params": sum(t.numel() for t in layer.state_dict().values()), "build_s": build_s,
    }


def run(args: argparse.Namespace) -> int:
    import torch

    if args.prompt:
        from .bench_prompt import run as run_prompt

        return run_prompt(args)
    if args.end_of_turn:
        from .bench_turns import run as run_end_of_turn

        return run_end_of_turn(args)
    if args.device == "meta" and not args.memory:
        raise ValueError("--device meta runs no arithmetic: use it with --memory")
    with torch.no_grad():
        if args.memory:
            from .bench_memory import measure_memory, print_memory

            result = measure_memory(args)
            printer = print_memory
        elif args.config == "layer":
            result, printer = measure_layer(args), _print_layer
        else:
            result, printer = measure(args), _print_frame
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        printer(result)
    return 0


def _print_layer(r: dict) -> None:
    print(f"device {r['device']}, one released-width temporal layer + depformer sub-step "
          f"({r['params'] / 1e6:.0f} M params), {r['dtype']}, quant {r['quant']}, KV window {r['kv_slots']} slots")
    print(f"time per slice      median {r['ms_per_frame']:8.2f} ms   p95 {r['p95_ms']:8.2f} ms ({r['steps']} steps)")
    print(f"bytes moved         {r['bytes_per_frame'] / 1e6:.1f} MB ({r['kernels']} kernels)")


def _print_frame(r: dict) -> None:
    print(f"device {r['device']}, model {r['config']} ({r['lm_params'] / 1e6:.0f} M LM params), "
          f"{r['dtype']}, quant {r['quant']}, capture {r['capture']}, {r['steps']} frames")
    for name in ("frame", "eager_frame", "encode", "lm_step", "decode"):
        s = r[name]
        label = {"frame": "frame (whole step)", "eager_frame": "  eager frame"}.get(name, f"    {name}")
        print(f"{label:20s} median {s['median_ms']:8.2f} ms   p95 {s['p95_ms']:8.2f} ms")
    rtf = r["real_time_factor"]
    print(f"real-time factor    {rtf:.2f} ({'faster' if rtf < 1 else 'slower'} than real time)")
    print(f"ops per frame       {r['ops_per_frame']} (kernels of the eager frame)")
    print(f"bytes per frame     {r['bytes_per_frame'] / 1e9:.3f} GB moved ({r['bytes_read_per_frame'] / 1e9:.3f} read)")
    print(f"peak memory         {r['peak_memory_bytes'] / 2**30:.2f} GiB")
    print(f"load / warm-up      {r['load_s']:.1f} s / {r['warmup_s']:.1f} s")
    if "bandwidth_gb_s" in r:
        frac = r["bandwidth_fraction"]
        print(f"bandwidth           {r['bandwidth_gb_s']:.0f} GB/s"
              + (f" ({100 * frac:.0f} % of the device's peak)" if frac else ""))
    if "capture_fallback" in r:
        print(f"note                frames ran eagerly: {r['capture_fallback']}")
