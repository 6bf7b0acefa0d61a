"""Batched prefill against the stepwise prompt phases (engine/prompts.py) and the reference's goldens."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from livebytes import LiveBytes
from testkit import FIXTURES, ForbidHostSync, load_golden, tiny_config_dict

from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.config import ModelConfig
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator, GeneratorOptions
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.mimi import Mimi
from ppx_desktop.engine.model import load_model
from ppx_desktop.engine.prefill import Prefiller, prefill_activation_bytes
from ppx_desktop.engine.prompts import VoicePrompt, load_voice_audio, load_voice_file, run_prompts
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.tiny import synthetic_voice

GREEDY = SamplingConfig.greedy()


@pytest.fixture(scope="module")
def fixture_codec_lm():
    """The reference fixtures' tiny Mimi and LM: an LM context of 16 frames, shorter than the
    sessions' prompts (31 and 43 frames), so the ring wraps inside the prompt phases."""
    config = ModelConfig.from_dict(tiny_config_dict())
    mimi, lm = Mimi(config.mimi, device="meta"), LMModel(config.lm, device="meta")
    load_weights(mimi, FIXTURES / "tiny_mimi.safetensors", dtype=torch.float32)
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", dtype=torch.float32, plan_fn=lm_plan)
    return config, mimi.eval(), lm.eval()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


def assert_same_state(batched, stepwise, written: int | None = None):
    """Token ring, forced flags and offsets exactly; keys and values to float32 rounding."""
    assert batched.offset == stepwise.offset
    assert torch.equal(batched.lm.offset, stepwise.lm.offset)
    assert torch.equal(batched.cache, stepwise.cache)
    assert torch.equal(batched.provided, stepwise.provided)
    assert batched.provided_host == stepwise.provided_host
    slots = slice(None) if written is None else slice(0, written)
    for a, b in zip(batched.lm.keys + batched.lm.values, stepwise.lm.keys + stepwise.lm.values):
        torch.testing.assert_close(a[:, :, slots], b[:, :, slots], atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 5, 256])
@pytest.mark.parametrize("session", ["A", "B", "C"])
def test_reference_sessions_after_prompts(fixture_codec_lm, session, chunk):
    """A: WAV voice and persona; B: the same voice replayed from its .pt; C: WAV voice, no persona."""
    config, mimi, lm = fixture_codec_lm
    g = load_golden(f"session_{session}.safetensors")
    voice = load_voice_file(FIXTURES / "tiny_voice.pt") if session == "B" else load_voice_audio(
        FIXTURES / "tiny_voice.wav")
    text = g["text_prompt_tokens"].tolist() if "text_prompt_tokens" in g else []
    gen = Generator(lm, GREEDY)
    batched, stepwise = gen.init_state(1), gen.init_state(1)
    Prefiller(gen, chunk).prompts(batched, config.prompt, mimi=mimi, voice=voice, text_tokens=text)
    run_prompts(gen, stepwise, config.prompt, mimi=mimi, voice=voice, text_tokens=text)
    assert_same_state(batched, stepwise)
    assert torch.equal(batched.cache, g["lmgen_cache_after_prompts"])
    assert torch.equal(batched.provided, g["lmgen_provided_after_prompts"])
    assert batched.offset == int(g["lmgen_offset_after_prompts"][0])
    user = g["user_codes"]
    tokens = torch.stack([gen.step(batched, user=user[:, :, t:t + 1]).tokens[0, :, 0] for t in range(user.shape[-1])])
    assert torch.equal(tokens, g["user_out_tokens"])  # the reference's greedy conversation, token for token


@pytest.mark.parametrize("voice_kind, text, silence, chunk, exact", [
    pytest.param("wav", [5, 6, 7, 8, 9], 6, 256, False, id="wav-persona"),
    pytest.param("pt", [5, 6, 7, 8, 9], 6, 7, False, id="pt-persona-chunk7"),
    pytest.param("pt", [], 0, 1, False, id="pt-alone-chunk1"),
    pytest.param("none", [11, 12], 6, 3, False, id="no-voice"),
    pytest.param("wav", [5, 6], 2, 4, True, id="wav-exact-window"),
])
def test_tiny_model_prompts_and_what_follows(tiny, voice_kind, text, silence, chunk, exact):
    """The demo model's context (256) outlasts the prompts: the ring fills in place."""
    voice = {"wav": VoicePrompt("w", frames=np.stack(np.split(synthetic_voice(1, 1.92), 24))),
             "pt": tiny.load_voice("VARM0"), "none": None}[voice_kind]
    gen = Generator(tiny.lm, GREEDY, GeneratorOptions(exact_window=exact))
    batched, stepwise = gen.init_state(1), gen.init_state(1)
    Prefiller(gen, chunk).prompts(batched, tiny.config.prompt, mimi=tiny.mimi, voice=voice, text_tokens=text,
                                  silence_frames=silence)
    run_prompts(gen, stepwise, tiny.config.prompt, mimi=tiny.mimi, voice=voice, text_tokens=text,
                silence_frames=silence)
    assert_same_state(batched, stepwise, written=stepwise.offset - 1)
    # The conversation that follows, through the real frame step: the same greedy tokens and audio.
    user = synthetic_voice(2, 1.6, seed=3).reshape(-1, 1920)
    outs = []
    for state in (batched, stepwise):
        fs = FrameStep(tiny, gen, capture="off")
        codec = fs.init_codec_state()
        outs.append([fs(state, codec, frame) for frame in user])
    assert [r.tokens.tolist() for r in outs[0]] == [r.tokens.tolist() for r in outs[1]]
    np.testing.assert_allclose(np.concatenate([r.pcm for r in outs[0]]), np.concatenate([r.pcm for r in outs[1]]),
                               atol=1e-5, rtol=0)


def test_voice_file_equals_the_stepwise_voice_phase(tiny):
    """A `.pt` voice from a recording: the same embeddings and token ring, bit for bit, without a
    transformer pass or a context-sized state; and the batched voice phase collects the same."""
    voice = VoicePrompt("me", frames=np.stack(np.split(synthetic_voice(3, 2.4, seed=5), 30)))
    gen = Generator(tiny.lm, GREEDY)
    emb, cache = run_prompts(gen, gen.init_state(1), tiny.config.prompt, mimi=tiny.mimi, voice=voice,
                             silence_frames=0, collect_embeddings=True)
    pf = Prefiller(gen, chunk=8)
    file_emb, file_cache = pf.voice_file(tiny.config.prompt, tiny.mimi, voice)
    assert file_emb.shape == emb.shape == (29, 1, 1, tiny.config.lm.dim)
    assert torch.equal(file_emb, emb) and torch.equal(file_cache, cache)
    phase_emb, phase_cache = pf.prompts(gen.init_state(1), tiny.config.prompt, mimi=tiny.mimi, voice=voice,
                                        silence_frames=0, collect_embeddings=True)
    assert torch.equal(phase_emb, emb) and torch.equal(phase_cache, cache)


def test_whole_clip_mimi_codes_differ_once_the_codec_ring_wraps(fixture_codec_lm):
    """Why a WAV voice prompt is still encoded frame by frame: encoding the whole clip at once
    gives the reference's codes only while the clip fits the codec's attention ring (12 latent
    steps here = 6 frames; 250 = 124 frames, about 10 s, for the released Mimi)."""
    _, mimi, _ = fixture_codec_lm
    frames = load_voice_audio(FIXTURES / "tiny_voice.wav").frames
    enc = mimi.init_encoder_state(1)
    stepwise = torch.cat([mimi.encode_step(torch.from_numpy(f).view(1, 1, -1), enc) for f in frames], dim=-1)
    whole = mimi.encode(torch.from_numpy(np.concatenate(frames)).view(1, 1, -1))
    g = load_golden("session_A.safetensors")
    assert torch.equal(stepwise, g["voice_prompt_codes"])  # frame by frame is the reference
    differs = (whole != stepwise).any(dim=1)[0]
    assert not differs[:5].any() and differs[5:].any()


def test_prefill_has_no_host_sync(tiny):
    gen = Generator(tiny.lm, GREEDY)
    state = gen.init_state(1)
    pf = Prefiller(gen, chunk=16)
    voice, frames = tiny.load_voice("NATF0"), torch.randint(0, 32, (1, 17, 300))
    with ForbidHostSync():
        pf.prompts(state, tiny.config.prompt, voice=voice, text_tokens=list(range(5, 40)))
        pf.frames(state, frames)  # past the 256-frame ring: the wrapped path


def test_activation_memory_is_bounded_by_the_chunk(tiny):
    """Peak live bytes of a prefill depend on the chunk, not on the number of frames, and stay
    under `prefill_activation_bytes` (counted allocation by allocation)."""
    cfg = dataclasses.replace(tiny.config.lm, context=512)
    lm = LMModel(cfg).eval()
    gen = Generator(lm, GREEDY)
    pf = Prefiller(gen, chunk=32)
    peaks = {}
    for frames in (64, 192, 600):  # 2 and 6 chunks in place, then past the ring (wrapped)
        state = gen.init_state(1)
        tokens = torch.randint(0, 32, (1, 17, frames))
        with LiveBytes() as mem:
            pf.frames(state, tokens)
        peaks[frames] = mem.peak
        assert mem.live == 0  # nothing allocated stays behind
    bound = prefill_activation_bytes(cfg, 32, torch.float32, positions=600)
    assert max(peaks.values()) <= bound
    assert peaks[192] < 1.2 * peaks[64]  # three times the frames, about the same peak
