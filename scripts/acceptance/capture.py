"""Checks 3-5: the released frame captured as CUDA graphs, replayed without a host sync, equal to
the eager frame across the first KV boundary and the context wrap, and sampling inside the graph."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.sampling import SamplingConfig

from .frames import differing_frames, frame, graph_backend, kv_part, ms_stats, started, state_at
from .report import describe

# Ops that read a device value on the host (or have a data-dependent shape): the dry run's
# stand-in for CUDA's sync debug mode.
_SYNC_OPS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "_unique2",
             "unique_consecutive", "bincount", "repeat_interleave"}


class HostSyncs(TorchDispatchMode):
    """Counts the ops that would make a CUDA replay wait for the device (CPU dry run)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in _SYNC_OPS:
            self.seen.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def no_host_sync(run):
    """On CUDA `torch.cuda.set_sync_debug_mode("error")` (a sync raises); on the CPU a counter."""
    if run.cuda:
        torch.cuda.synchronize(run.device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield []
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        with HostSyncs() as guard:
            yield guard.seen


def check_capture(run, parts) -> None:
    model = run.models.get("bfloat16")
    gen = Generator(model.lm, SamplingConfig())  # the app's sampling, so its kernels are in the graph
    state = started(gen)
    graphs = graph_backend(run)
    fs = FrameStep(model, gen, capture="cuda-graph", graphs=graphs)
    codec = fs.init_codec_state()
    expected = len(gen.kv_limits_ahead(state))
    t0 = time.perf_counter()
    fs.warmup(state, codec)
    run.synchronize()
    warmup_s = time.perf_counter() - t0
    parts.judge("capture", f"every graph captured at warm-up (one per KV part read: {expected}), no fallback",
                graphs.captures == expected and fs.fallback_reason is None, graphs=graphs.captures,
                expected=expected, fallback=fs.fallback_reason, warmup_s=round(warmup_s, 2))
    n = run.scale.replays
    times, failure = [], None
    how = "sync debug mode 'error'" if run.cuda else "dry run: no op reading a device value on the host"
    with no_host_sync(run) as syncs:
        try:
            for pcm in run.speech_frames(n):
                t = time.perf_counter()
                fs(state, codec, pcm)
                times.append(time.perf_counter() - t)
        except Exception as exc:  # the sync (or any error) that stopped the replays
            failure = describe(exc)
    ok = failure is None and not syncs and len(times) == n and graphs.captures == expected
    parts.judge("replays", f"{n} frames replayed without a host sync or an error ({how}); nothing captured "
                "mid-conversation", ok, replays=len(times), syncs=sorted(set(syncs)), error=failure,
                graphs_after=graphs.captures, **(ms_stats(times) if times else {}))
    fs.release_graphs()
    stats = ms_stats(times) if times else {}
    parts.summary = (f"{graphs.captures}/{expected} graphs in {warmup_s:.1f} s; {len(times)}/{n} replays, "
                     f"{len(set(syncs))} sync ops{'; ' + failure if failure else ''}; median "
                     f"{stats.get('median_ms', float('nan')):.1f} ms")


def _run_frames(fs, state, codec, frames, gen) -> tuple[list, set]:
    records, limits = [], set()
    for pcm in frames:
        limits.add(gen.kv_limit(state))
        records.append(frame(fs, state, codec, pcm))
    return records, limits


def check_graph_vs_eager(run, parts) -> None:
    model = run.models.get("bfloat16")
    gen = Generator(model.lm, SamplingConfig.greedy())
    capacity = model.config.lm.context
    n = run.scale.boundary_frames
    boundary = kv_part(capacity)
    summary = []
    for label, start, crossing in (("first KV boundary", boundary - n // 2, f"slot {boundary}"),
                                   ("context wrap", capacity - n // 2, f"the ring's end ({capacity} slots)")):
        criterion = (f"from offset {start}, {n} frames across {crossing}: graph and eager frames give identical "
                     "greedy tokens (all 17 streams) and audio within 1e-3")
        with parts.guard(label, criterion):
            graph_state = state_at(gen, start, seed=1)
            eager_state = graph_state.snapshot()
            frames = run.speech_frames(n)
            graphs = graph_backend(run)
            graph = FrameStep(model, gen, capture="cuda-graph", graphs=graphs)
            eager = FrameStep(model, gen, capture="off")
            graph_codec, eager_codec = graph.init_codec_state(), eager.init_codec_state()
            graph.warmup(graph_state, graph_codec)
            got, limits = _run_frames(graph, graph_state, graph_codec, frames, gen)
            ref, _ = _run_frames(eager, eager_state, eager_codec, frames, gen)
            graph.release_graphs()
            mismatched = differing_frames(got, ref)
            diff = max(float(np.abs(a[2] - b[2]).max()) for a, b in zip(got, ref))
            peak = max(float(np.abs(b[2]).max()) for b in ref)
            parts.judge(label, criterion, not mismatched and diff <= 1e-3 and graph.fallback_reason is None,
                        start_offset=start, frames=n, kv_limits=sorted(limits, key=lambda x: x or capacity + 1),
                        graphs=graphs.captures, fallback=graph.fallback_reason, token_mismatch_frames=mismatched,
                        max_audio_diff=diff, audio_peak=peak)
            summary.append(f"{label}: {n - len(mismatched)}/{n} frames identical, audio diff {diff:.1e}")
    parts.summary = "; ".join(summary)


def check_sampling(run, parts) -> None:
    model = run.models.get("bfloat16")
    gen = Generator(model.lm, SamplingConfig())
    state = started(gen)
    fs = FrameStep(model, gen, capture="cuda-graph", graphs=graph_backend(run))
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    g_snap, c_snap = state.snapshot(), codec.snapshot()
    n = run.scale.seeded_frames
    frames = run.speech_frames(n)

    def replay(count: int, seed: int | None = None) -> list:
        state.restore(g_snap)
        codec.restore(c_snap)
        if seed is not None:
            torch.manual_seed(seed)  # captured frames draw from the device's default generator
        return [frame(fs, state, codec, pcm) for pcm in frames[:count]]

    a, b = replay(n, seed=1234), replay(n, seed=1234)
    mismatched = differing_frames(a, b) + [i for i, (x, y) in enumerate(zip(a, b)) if not np.array_equal(x[2], y[2])]
    parts.judge("seeded", f"torch.manual_seed reproduces {n} sampled frames exactly (every token, the audio)",
                not mismatched, frames=n, differing_frames=sorted(set(mismatched)))
    again = replay(5)
    redrawn = len(differing_frames(a[:5], again))
    distinct = len({tuple(x[1][1:].flatten().tolist()) for x in a})
    parts.judge("fresh draws", "the same 5 frames replayed from the same state without reseeding draw other "
                f"tokens; the audio tokens change from frame to frame (over half of {n} rings distinct)",
                redrawn > 0 and distinct > n // 2, redrawn_frames_of_5=redrawn, distinct_rings=distinct)
    fs.release_graphs()
    parts.summary = (f"seeded runs {'identical' if not mismatched else f'differ in {len(set(mismatched))} frames'}; "
                     f"unseeded replays differ in {redrawn}/5 frames; {distinct}/{n} distinct token rings")
