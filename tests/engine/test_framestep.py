"""The one-graph frame step: equal to encode -> Generator.step -> decode, capturable, sync-free."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
import torch
from testkit import FIXTURES, ForbidHostSync, load_golden, tiny_config_dict

from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.config import FRAME_SIZE, ModelConfig
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.mimi import Mimi
from ppx_desktop.engine.prompts import run_prompts
from ppx_desktop.engine.sampling import SamplingConfig

N_FRAMES = 20  # past the tiny LM's 16-slot context: the ring wraps


@pytest.fixture(scope="module")
def model():
    config = ModelConfig.from_dict(tiny_config_dict())
    mimi, lm = Mimi(config.mimi, device="meta"), LMModel(config.lm, device="meta")
    load_weights(mimi, FIXTURES / "tiny_mimi.safetensors", dtype=torch.float32)
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", dtype=torch.float32, plan_fn=lm_plan)
    return types.SimpleNamespace(config=config, mimi=mimi.eval(), lm=lm.eval(), device=torch.device("cpu"))


@pytest.fixture(scope="module")
def user_frames():
    wav = load_golden("mimi_golden.safetensors")["waveform"][0, 0].numpy()
    return [wav[i * FRAME_SIZE:(i + 1) * FRAME_SIZE] for i in range(N_FRAMES)]


def prompted(model, sampling, seed=None):
    rng = None if seed is None else torch.Generator().manual_seed(seed)
    gen = Generator(model.lm, sampling, rng=rng)
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt, text_tokens=[5, 6, 7])
    return gen, state


def started(model, sampling, seed=None):
    """Only the start-up frames, no prompts: the frames then cross every part of the ring that
    attention reads (GeneratorOptions.kv_buckets), and the wrap."""
    rng = None if seed is None else torch.Generator().manual_seed(seed)
    gen = Generator(model.lm, sampling, rng=rng)
    state = gen.init_state(1)
    while state.offset <= model.config.lm.max_delay:
        gen.step(state, user=torch.zeros(1, 8, 1, dtype=torch.long))
    return gen, state


def composition(model, sampling, frames, seed=None, start=prompted):
    """What offline.py did before FrameStep: the reference for the frame step."""
    gen, state = start(model, sampling, seed)
    enc, dec = model.mimi.init_encoder_state(1), model.mimi.init_decoder_state(1)
    pcm, text = [], []
    for frame in frames:
        out = gen.step(state, user=model.mimi.encode_step(torch.from_numpy(frame).view(1, 1, -1), enc))
        pcm.append(model.mimi.decode_step(out.tokens[:, 1:9], dec)[0, 0].numpy())
        text.append(int(out.tokens[0, 0, 0]))
    return pcm, text, state


def frame_steps(model, sampling, frames, seed=None, start=prompted, **kw):
    gen, state = start(model, sampling, seed)
    fs = FrameStep(model, gen, **kw)
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    results = [fs(state, codec, frame) for frame in frames]
    return [r.pcm for r in results], [r.text_id for r in results], results, state


@pytest.mark.parametrize("sampling, seed, start", [
    pytest.param(SamplingConfig.greedy(), None, prompted, id="greedy"),
    pytest.param(SamplingConfig(top_k_audio=8, top_k_text=8), 11, prompted, id="seeded-sampling"),
    pytest.param(SamplingConfig.greedy(), None, started, id="greedy-from-start-up"),
])
def test_eager_frame_step_equals_composition(model, user_frames, sampling, seed, start):
    pcm_ref, text_ref, state_ref = composition(model, sampling, user_frames, seed, start)
    pcm, text, results, state = frame_steps(model, sampling, user_frames, seed, start, capture="off")
    assert text == text_ref
    assert all(np.array_equal(a, b) for a, b in zip(pcm, pcm_ref))
    assert torch.equal(state.cache, state_ref.cache) and torch.equal(state.provided, state_ref.provided)
    assert state.provided_host == state_ref.provided_host and state.offset == state_ref.offset
    assert all(r.pcm.dtype == np.float32 and r.pcm.shape == (FRAME_SIZE,) for r in results)
    if start is prompted:
        assert results[0].text_prob == 1.0  # the first reported token is the prompt's forced one
    assert all(0.0 < r.text_prob <= 1.0 for r in results)
    if not sampling.use_sampling:
        # Greedy picks the most likely token: above uniform over the text vocabulary.
        assert all(r.text_prob > 1 / model.config.lm.text_card for r in results[2:])


def test_frame_step_has_no_host_sync(model, user_frames):
    gen, state = prompted(model, SamplingConfig(top_k_audio=8, top_k_text=8), seed=0)
    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    with ForbidHostSync():
        for frame in user_frames:
            fs(state, codec, frame)


def test_codec_state_snapshot_restore(model, user_frames):
    gen, state = prompted(model, SamplingConfig.greedy())
    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    g_snap, c_snap = state.snapshot(), codec.snapshot()
    first = [fs(state, codec, f).pcm for f in user_frames[:5]]
    state.restore(g_snap)
    codec.restore(c_snap)
    second = [fs(state, codec, f).pcm for f in user_frames[:5]]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    codec.reset()
    assert bool(codec.enc.first) and float(codec.text_prob[0]) == 1.0


def test_refuses_states_before_the_prompts_end(model):
    gen = Generator(model.lm, SamplingConfig.greedy())
    fs = FrameStep(model, gen, capture="off")
    with pytest.raises(ValueError, match="prompt"):
        fs(gen.init_state(1), fs.init_codec_state(), np.zeros(FRAME_SIZE, np.float32))
    with pytest.raises(ValueError, match="cuda-graph"):
        FrameStep(model, gen, capture="cuda-graph")
    with pytest.raises(ValueError, match="capture must be"):
        FrameStep(model, gen, capture="fast")


def _compiled_matches_eager(model, user_frames, compile_options):
    import torch._dynamo

    torch._dynamo.reset()
    greedy = SamplingConfig.greedy()
    pcm_ref, text_ref, _, _ = frame_steps(model, greedy, user_frames, start=started, capture="off")
    torch._dynamo.utils.counters.clear()
    gen, state = started(model, greedy)
    fs = FrameStep(model, gen, capture="compile", compile_options=compile_options)
    codec = fs.init_codec_state()
    variants = len(gen.kv_limits_ahead(state))
    assert variants == 4  # the frames read the ring in parts of 4, 8, 12 slots, then all of it
    # warmup() compiles one graph per part (fullgraph: any graph break raises) ...
    fs.warmup(state, codec)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == variants
    # ... so that the frames, which cross every part and the wrap, never recompile.
    with torch._dynamo.config.patch(error_on_recompile=True):
        results = [fs(state, codec, frame) for frame in user_frames]
    assert [r.text_id for r in results] == text_ref
    for r, b in zip(results, pcm_ref):
        np.testing.assert_allclose(r.pcm, b, atol=1e-5, rtol=0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == variants
    assert not torch._dynamo.utils.counters["graph_break"]


@pytest.mark.slow
def test_frame_step_traces_as_one_graph(model, user_frames):
    # backend="eager": Dynamo captures the whole frame as one graph (fullgraph, no recompiles)
    # without Inductor's code generation, which takes minutes on this CPU.
    _compiled_matches_eager(model, user_frames, {"backend": "eager"})


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PPX_TEST_COMPILE"),
                    reason="Inductor code generation takes minutes on CPU; set PPX_TEST_COMPILE=1")
def test_frame_step_compiles_with_inductor(model, user_frames):
    _compiled_matches_eager(model, user_frames, {})


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@requires_cuda
def test_cuda_graph_matches_eager(model, user_frames):
    cuda = types.SimpleNamespace(config=model.config, mimi=Mimi(model.config.mimi, device="cuda"),
                                 lm=LMModel(model.config.lm, device="cuda"), device=torch.device("cuda"))
    cuda.mimi.load_state_dict(model.mimi.state_dict())
    cuda.lm.load_state_dict(model.lm.state_dict())
    cuda.mimi.eval(), cuda.lm.eval()
    greedy = SamplingConfig.greedy()
    # From the start-up frames, so the frames replay every captured part of the ring.
    _, text_ref, results_ref, _ = frame_steps(cuda, greedy, user_frames, start=started, capture="off")
    _, text, results, _ = frame_steps(cuda, greedy, user_frames, start=started, capture="cuda-graph")
    assert text == text_ref
    for a, b in zip(results, results_ref):
        np.testing.assert_allclose(a.pcm, b.pcm, atol=1e-4, rtol=0)


# --- capture logic on any device: the eager graph backend (engine/graphs.py) -------------------


def test_captured_frames_equal_eager_ones_and_warmup_changes_nothing(model, user_frames):
    from ppx_desktop.engine.graphs import EagerGraphs

    greedy = SamplingConfig.greedy()
    _, text_ref, results_ref, state_ref = frame_steps(model, greedy, user_frames, start=started, capture="off")
    gen, state = started(model, greedy)
    graphs = EagerGraphs()
    fs = FrameStep(model, gen, capture="cuda-graph", graphs=graphs)
    codec = fs.init_codec_state()
    before = state.snapshot()
    fs.warmup(state, codec)  # captures every KV part ahead, restoring the touched slots each time
    assert graphs.captures == 4 and fs.fallback_reason is None
    assert torch.equal(state.cache, before.cache) and torch.equal(state.provided, before.provided)
    assert state.offset == before.offset and torch.equal(state.lm.offset, before.lm.offset)
    assert all(torch.equal(a, b) for a, b in zip(state.lm.keys + state.lm.values, before.lm.keys + before.lm.values))
    results = [fs(state, codec, frame) for frame in user_frames]  # across every part and the wrap
    assert graphs.captures == 4  # nothing captured mid-conversation
    assert [r.text_id for r in results] == text_ref
    for a, b in zip(results, results_ref):
        np.testing.assert_allclose(a.pcm, b.pcm, atol=1e-5, rtol=0)
    assert torch.equal(state.cache, state_ref.cache)


def test_a_failed_capture_falls_back_to_identical_eager_frames(model, user_frames):
    """The capture fails after its two warm-up frames (state two frames ahead): the state is
    restored and the frames run eagerly, token for token as an uninterrupted eager run."""
    from ppx_desktop.engine.graphs import EagerGraphs

    greedy = SamplingConfig.greedy()
    _, text_ref, results_ref, state_ref = frame_steps(model, greedy, user_frames, capture="off")
    gen, state = prompted(model, greedy)
    failure = RuntimeError("CUDA error: operation not permitted when stream is capturing")
    fs = FrameStep(model, gen, capture="cuda-graph", graphs=EagerGraphs(fail=failure))
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    assert fs.capture == "off" and "operation not permitted" in fs.fallback_reason
    results = [fs(state, codec, frame) for frame in user_frames]
    assert [r.text_id for r in results] == text_ref
    assert all(np.array_equal(a.pcm, b.pcm) for a, b in zip(results, results_ref))
    assert torch.equal(state.cache, state_ref.cache) and state.offset == state_ref.offset


def test_touched_snapshot_undoes_frames_like_a_full_one(model, user_frames):
    gen, state = started(model, SamplingConfig.greedy())
    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    for frame in user_frames[:14]:  # near the 16-slot ring's end: the next frames wrap
        fs(state, codec, frame)
    full, touched, c_snap = state.snapshot(), state.snapshot_touched(3), codec.snapshot()
    first = [fs(state, codec, f).pcm for f in user_frames[14:17]]
    state.restore_touched(touched)
    codec.restore(c_snap)
    assert all(torch.equal(a, b) for a, b in zip(state.lm.keys + state.lm.values, full.lm.keys + full.lm.values))
    assert torch.equal(state.cache, full.cache) and state.offset == full.offset
    again = [fs(state, codec, f).pcm for f in user_frames[14:17]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quantised_frame_traces_as_one_graph(model, user_frames, kind):
    from ppx_desktop.engine.quant import quantize_lm

    quantised = types.SimpleNamespace(config=model.config, mimi=model.mimi, lm=quantize_lm(model.lm, kind),
                                      device=model.device)
    _compiled_matches_eager(quantised, user_frames, {"backend": "eager"})


def test_timed_frames_are_the_same_frames_cut_in_three(model, user_frames):
    """`bench` times encode, LM and decode within the frames it times whole (they add up)."""
    gen, state = prompted(model, SamplingConfig.greedy())
    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    ref_gen, ref_state = prompted(model, SamplingConfig.greedy())
    ref = FrameStep(model, ref_gen, capture="off")
    ref_codec = ref.init_codec_state()
    for frame in user_frames[:4]:
        result, parts = fs.timed(state, codec, frame)
        expected = ref(ref_state, ref_codec, frame)
        assert len(parts) == 3 and all(p > 0 for p in parts)
        assert result.text_id == expected.text_id and np.array_equal(result.pcm, expected.pcm)
    assert state.offset == ref_state.offset and torch.equal(state.cache, ref_state.cache)
