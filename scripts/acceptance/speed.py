"""Check 6: time per frame in each precision, the bandwidth it achieves against the traced bytes
per frame, and the attention kernel the profiler sees."""

from __future__ import annotations

import time

from ppx_desktop.engine.framecost import frame_cost
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.sampling import SamplingConfig

from .frames import ms_stats, started

PRECISIONS = ("bfloat16", "int8", "int4")
FRAME_MS = 80.0
_ATTENTION_WORDS = ("attention", "flash", "fmha", "sdpa", "attn")


def int4_unavailable(run) -> str | None:
    """Why int4 cannot run on this GPU (None: it can)."""
    from ppx_desktop.engine.quant import QuantError, check_quant

    try:
        check_quant("int4", run.device)
    except QuantError as exc:
        return str(exc)
    return None


def attention_kernels(fs, state, codec, pcm, run) -> dict:
    """Profiles one eager frame: the attention operators dispatched and the device kernels behind them."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.cuda else [])
    with profile(activities=activities) as prof:
        fs.timed(state, codec, pcm)
        run.synchronize()
    names = {e.key for e in prof.key_averages() if any(w in e.key.lower() for w in _ATTENTION_WORDS)}
    return {"operators": sorted(n for n in names if n.startswith("aten::")),
            "kernels": sorted(n[:160] for n in names if not n.startswith("aten::"))}


def _time_precision(run, precision: str) -> dict:
    model = run.models.get(precision)
    gen = Generator(model.lm, SamplingConfig())
    state = started(gen)
    fs = FrameStep(model, gen, capture="auto")  # a CUDA graph on a GPU, eager on the CPU (as the app)
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    n = run.scale.timed_frames
    frames = run.speech_frames(n + 10)
    for pcm in frames[:10]:  # settle clocks and caches
        fs(state, codec, pcm)
    limit = gen.kv_limit(state)
    times = []
    for pcm in frames[10:]:
        t = time.perf_counter()
        fs(state, codec, pcm)
        times.append(time.perf_counter() - t)
    stats = ms_stats(times)
    cost = frame_cost(run.config, precision, limit)
    values = {"frames": n, "capture": fs.capture, "fallback": fs.fallback_reason, **stats,
              "kv_slots_read": limit or run.config.lm.context, "bytes_per_frame_gb": round(cost.bytes_moved / 1e9, 3),
              "achieved_gbs": round(cost.bytes_moved / (stats["median_ms"] / 1e3) / 1e9, 3),
              "kernels_per_frame": cost.kernels, "build_s": run.models.build_seconds.get(precision)}
    if run.cuda:
        from ppx_desktop.engine.model import device_bandwidth

        peak = device_bandwidth(run.device)
        values["peak_gbs"] = round(peak / 1e9, 1) if peak else None
        values["share_of_peak"] = round(values["achieved_gbs"] * 1e9 / peak, 3) if peak else None
    values["attention"] = attention_kernels(fs, state, codec, frames[0], run)
    fs.release_graphs()
    return values


def check_speed(run, parts) -> None:
    medians, summary, kernels = {}, [], []
    for precision in PRECISIONS:
        criterion = (f"{run.scale.timed_frames} frames replayed as CUDA graphs, p95 under {FRAME_MS:.0f} ms; "
                     "achieved GB/s against the traced bytes per frame")
        reason = int4_unavailable(run) if precision == "int4" and run.cuda else None
        if reason is not None:
            parts.needs_cuda(precision, criterion + " (needs compute capability 8.0+)", reason=reason)
            continue
        with parts.guard(precision, criterion):
            v = _time_precision(run, precision)
            medians[precision] = v["median_ms"]
            parts.cuda_only(precision, criterion, v["capture"] == "cuda-graph" and v["p95_ms"] < FRAME_MS, **v)
            summary.append(f"{precision} {v['median_ms']:.1f}/{v['p95_ms']:.1f} ms, {v['achieved_gbs']:.3g} GB/s")
            kernels += v["attention"]["kernels"] or v["attention"]["operators"]
    for faster, slower in (("int8", "bfloat16"), ("int4", "int8")):
        if faster in medians and slower in medians:
            parts.cuda_only(f"{faster} faster than {slower}", f"median {faster} frame below median {slower} (it "
                            "reads fewer bytes)", medians[faster] < medians[slower],
                            **{f"{faster}_ms": medians[faster], f"{slower}_ms": medians[slower]})
    kernel = kernels[0].split("<")[0].split("(")[0][:60] if kernels else ""
    parts.summary = ("median/p95: " + "; ".join(summary) + (f"; attention: {kernel}" if kernel else "")
                     + ("" if run.cuda else " (tiny model on the CPU: no verdict)"))
