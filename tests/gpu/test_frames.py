"""Frames inside captured CUDA graphs (tiny reference model on the GPU): greedy frames equal the
eager ones across every KV part and the wrap, in every precision; sampled frames draw anew on
every replay and `torch.manual_seed` reproduces them; replays never synchronise with the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gpukit import on_cuda
from testkit import load_golden

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.sampling import SamplingConfig

pytestmark = pytest.mark.cuda

N_FRAMES = 20  # past the tiny LM's 16-slot context: every KV part is read, then the ring wraps


@pytest.fixture(scope="module")
def user_frames():
    wav = load_golden("mimi_golden.safetensors")["waveform"][0, 0].numpy()
    return [wav[i * FRAME_SIZE:(i + 1) * FRAME_SIZE] for i in range(N_FRAMES)]


@pytest.fixture(scope="module")
def model(tiny_cpu):
    return on_cuda(tiny_cpu)


def started(model, sampling):
    gen = Generator(model.lm, sampling)
    state = gen.init_state(1)
    while state.offset <= model.config.lm.max_delay:
        gen.step(state, user=torch.zeros(1, 8, 1, dtype=torch.long, device=model.device))
    return gen, state


def run(model, sampling, frames, capture):
    gen, state = started(model, sampling)
    fs = FrameStep(model, gen, capture=capture)
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    assert fs.fallback_reason is None
    return [fs(state, codec, f) for f in frames], fs


def assert_same_frames(got, ref, atol=1e-4):
    assert [r.text_id for r in got] == [r.text_id for r in ref]
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.pcm, b.pcm, atol=atol, rtol=0)


def test_greedy_graph_frames_equal_eager_ones(model, user_frames):
    greedy = SamplingConfig.greedy()
    ref, _ = run(model, greedy, user_frames, "off")
    got, fs = run(model, greedy, user_frames, "cuda-graph")
    assert fs.capture == "cuda-graph" and len(fs._graphs) == 4  # one graph per KV part, all at warm-up
    assert_same_frames(got, ref)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantised_graph_frames_equal_eager_ones(tiny_cpu, user_frames, kind, request):
    from ppx_desktop.engine.quant import quantize_lm

    if kind == "int4":
        request.getfixturevalue("needs_int4")
    gpu = on_cuda(tiny_cpu)
    bf16 = gpu.lm.to(torch.bfloat16)
    quantised = on_cuda(tiny_cpu, lm=quantize_lm(bf16, kind))  # quantised and packed on the GPU
    greedy = SamplingConfig.greedy()
    ref, _ = run(quantised, greedy, user_frames, "off")
    got, _ = run(quantised, greedy, user_frames, "cuda-graph")
    assert_same_frames(got, ref, atol=1e-3)


def test_sampled_graph_frames_draw_anew_and_reproduce_under_manual_seed(model, user_frames):
    gen, state = started(model, SamplingConfig(top_k_text=25, top_k_audio=16))
    fs = FrameStep(model, gen, capture="cuda-graph")
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    g_snap, c_snap = state.snapshot(), codec.snapshot()

    def frames(seed=None, count=N_FRAMES):
        state.restore(g_snap)
        codec.restore(c_snap)
        if seed is not None:
            torch.manual_seed(seed)
        out = []
        for f in user_frames[:count]:
            r = fs(state, codec, f)
            out.append((r.text_id, state.cache.cpu().clone(), r.pcm))
        return out

    a, b = frames(seed=5), frames(seed=5)
    assert all(x[0] == y[0] and torch.equal(x[1], y[1]) and np.array_equal(x[2], y[2]) for x, y in zip(a, b))
    # The same frames from the same state, replayed again without reseeding: the graph draws new
    # random numbers on each replay (its generator offset advances), so the sampled tokens differ.
    again = frames(count=5)
    assert any(not torch.equal(x[1], y[1]) for x, y in zip(a[:5], again))
    assert len({tuple(x[1][0, 1:9].flatten().tolist()) for x in a}) > N_FRAMES // 2  # frame to frame too


def test_graph_replays_never_synchronise(model, user_frames):
    gen, state = started(model, SamplingConfig())
    fs = FrameStep(model, gen, capture="cuda-graph")
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for f in user_frames:
            fs(state, codec, f)  # pinned copies in and out, one replay, one event wait
    finally:
        torch.cuda.set_sync_debug_mode("default")
