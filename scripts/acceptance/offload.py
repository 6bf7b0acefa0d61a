"""Check 8: int8 with temporal layers streamed from host memory gives the tokens it gives with none,
and the copies of the next layer run while the current one computes (profiler timeline)."""

from __future__ import annotations

import json
import time

import torch

from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.offload import LayerStreamer, OffloadPlan, layer_bytes
from ppx_desktop.engine.sampling import SamplingConfig

from .frames import differing_frames, frame, started

OFFLOADED = 4  # of the released model's 32 temporal layers (1 of the tiny model's 2)


def _frames(model, gen, state, snap, frames) -> tuple[list, float]:
    state.restore(snap)
    fs = FrameStep(model, gen, capture="off")  # layers in host memory run eagerly (hooks between layers)
    codec = fs.init_codec_state()
    t0 = time.perf_counter()
    records = [frame(fs, state, codec, pcm) for pcm in frames]
    return records, (time.perf_counter() - t0) / len(frames)


def check_offload(run, parts) -> None:
    model = run.models.take("int8")  # the streamer changes the model: it is not shared afterwards
    lm = model.lm
    total = model.config.lm.num_layers
    count = min(OFFLOADED, total - 1) if run.cuda else 1
    plan = OffloadPlan(tuple(range(total - count, total)), layer_bytes(model.config, model.dtype, model.quant))
    gen = Generator(lm, SamplingConfig.greedy())
    state = started(gen)
    snap = state.snapshot()
    n = run.scale.offload_frames
    frames = run.speech_frames(n)
    ref, resident_s = _frames(model, gen, state, snap, frames)
    for i in plan.layers:
        lm.transformer.layers[i].to("cpu")  # where the loader keeps offloaded layers
    run.free()
    streamer = LayerStreamer(lm, plan, run.device)
    got, streamed_s = _frames(model, gen, state, snap, frames)
    mismatched = differing_frames(got, ref)
    parts.judge("tokens", f"int8 with {count} of {total} temporal layers in host memory: the same greedy tokens "
                f"over {n} frames as with every layer on the device", not mismatched, layers=list(plan.layers),
                frames=n, mismatched_frames=mismatched, layer_copies=streamer.copies,
                resident_ms=round(resident_s * 1e3, 2), streamed_ms=round(streamed_s * 1e3, 2),
                planned_transfer_ms=round(plan.transfer_ms, 2))
    summary = (f"{count}/{total} layers streamed: {n - len(mismatched)}/{n} frames identical; "
               f"{resident_s * 1e3:.1f} -> {streamed_s * 1e3:.1f} ms per frame")
    criterion = ("the streamed layers' host-to-device copies overlap compute on another stream (profiler "
                 "timeline): at least half of the shorter of copy and compute time overlapped")
    if not run.cuda:
        parts.needs_cuda("overlap", criterion)
        parts.summary = summary
        return
    from torch.profiler import ProfilerActivity, profile

    from .cuda import copy_compute_overlap

    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for pcm in frames[:3]:
            fs(state, codec, pcm)
        torch.cuda.synchronize(run.device)
    path = run.out / "offload_trace.json"
    prof.export_chrome_trace(str(path))
    overlap = copy_compute_overlap(json.loads(path.read_text(encoding="utf-8")))
    parts.judge("overlap", criterion, overlap["copies"] > 0 and overlap["ratio"] >= 0.5, trace=path.name, **overlap)
    parts.summary = summary + f"; copies overlapped {overlap['ratio']:.0%} of the possible"
