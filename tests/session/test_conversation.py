"""The conversation API on a `make-tiny-model` model: turns, streaming, memory, caching, duplex."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.model import load_model
from ppx_desktop.engine.offline import run_offline
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.tiny import synthetic_voice
from ppx_desktop.session.context import ContextSettings
from ppx_desktop.session.conversation import PAD_IDS, Conversation, EarlyStop, TurnEnd
from ppx_desktop.session.duplex import FrameQueue
from ppx_desktop.session.statecache import PromptStateCache

GREEDY = SamplingConfig.greedy()
PROMPT = "You enjoy having a good conversation."


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


def speech(seconds: float, seed: int) -> np.ndarray:
    """A user's turn: the tiny model cannot understand words, any voiced audio will do."""
    return synthetic_voice(seed % 4, seconds, seed=seed).astype(np.float32)


# Shared like the app's worker shares it: each (voice, prompt) runs its prompt phases once.
SHARED_CACHE = PromptStateCache(folder=None, max_memory_entries=8)


def conversation(model, cache=None, **kw) -> Conversation:
    conv = Conversation(model, sampling=GREEDY, seed=0, cache=cache or SHARED_CACHE, **kw)
    conv.start("NATF0", PROMPT)
    return conv


def test_stream_chunks_equal_respond(model):
    conv = conversation(model)
    audio = speech(1.0, seed=1)
    stream = conv.respond_stream(audio, max_steps=12, early_stop=False)
    chunks = list(stream)
    conv.reset()
    whole = conv.respond(audio, max_steps=12, early_stop=False)
    assert len(chunks) == 12 == whole.steps
    assert whole.end == TurnEnd.MAX_STEPS and stream.result.end == TurnEnd.MAX_STEPS
    np.testing.assert_array_equal(np.concatenate([c.pcm for c in chunks]), whole.pcm)
    assert [c.text_id for c in chunks] == whole.text_ids
    assert all(c.pcm.shape == (FRAME_SIZE,) and c.pcm.dtype == np.float32 for c in chunks)
    assert whole.user_frames == 13  # 1 s = 12.5 frames, the last one zero-padded
    assert np.abs(whole.pcm).max() > 0


def test_second_turn_remembers_the_first(model):
    a, b = speech(0.8, seed=2), speech(0.8, seed=3)
    conv = conversation(model)
    conv.respond(a, max_steps=8, early_stop=False)
    second = conv.respond(b, max_steps=8, early_stop=False)
    fresh = conversation(model).respond(b, max_steps=8, early_stop=False)
    assert not np.array_equal(second.pcm, fresh.pcm)
    # And the same history gives the same answer: the difference is the memory, not noise.
    again = conversation(model)
    again.respond(a, max_steps=8, early_stop=False)
    np.testing.assert_array_equal(again.respond(b, max_steps=8, early_stop=False).pcm, second.pcm)


def test_cached_post_prompt_state_equals_recomputing(model, tmp_path):
    audio = speech(0.6, seed=4)
    disk = tmp_path / "states"
    first = Conversation(model, sampling=GREEDY, seed=0, cache=PromptStateCache(disk))
    assert first.start("NATF0", PROMPT) is False
    expected = first.respond(audio, max_steps=6, early_stop=False)
    # A new process: empty memory, states from disk.
    second = Conversation(model, sampling=GREEDY, seed=0, cache=PromptStateCache(disk))
    assert second.start("NATF0", PROMPT) is True
    assert second.state.offset == first._start_snapshot.offset
    np.testing.assert_array_equal(second.respond(audio, max_steps=6, early_stop=False).pcm, expected.pcm)
    # Another persona prompt with the same voice re-runs only the text phases (voice state cached).
    steps = []
    third = Conversation(model, sampling=GREEDY, seed=0, cache=PromptStateCache(disk))
    assert third.start("NATF0", "You enjoy cooking.", progress=lambda d, t: steps.append(d)) is False
    voice_frames = len(model.load_voice("NATF0").embeddings)
    assert steps[0] > voice_frames  # progress starts after the cached voice phase
    reference = Conversation(model, sampling=GREEDY, seed=0)
    reference.start("NATF0", "You enjoy cooking.")
    assert torch.equal(third.state.cache, reference.state.cache)
    np.testing.assert_array_equal(third.respond(audio, max_steps=6, early_stop=False).pcm,
                                  reference.respond(audio, max_steps=6, early_stop=False).pcm)


def test_corrupt_disk_cache_is_recomputed(model, tmp_path):
    disk = tmp_path / "states"
    Conversation(model, sampling=GREEDY, cache=PromptStateCache(disk)).start("NATM0", "")
    for f in disk.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    conv = Conversation(model, sampling=GREEDY, cache=PromptStateCache(disk))
    assert conv.start("NATM0", "") is False
    assert conv.started


@pytest.mark.parametrize("damage", [
    pytest.param("fewer_layers", id="fewer-layers"),
    pytest.param("wider_heads", id="other-head-size"),
    pytest.param("nan_keys", id="nan-keys"),
    pytest.param("token_ring", id="other-token-ring"),
])
def test_a_disk_cache_that_loads_but_does_not_fit_is_discarded_saying_so_once(model, tmp_path, damage):
    import torch

    from ppx_desktop.session.statecache import PromptState

    disk = tmp_path / "states"
    Conversation(model, sampling=GREEDY, cache=PromptStateCache(disk)).start("NATM0", PROMPT)
    files = sorted(disk.glob("*.safetensors"))
    assert len(files) == 2  # after the voice, after the prompts
    for f in files:  # a readable file of the right format that does not fit this model
        snap = PromptState.load(f, torch.device("cpu"))
        if damage == "fewer_layers":
            snap.keys, snap.values = snap.keys[:1], snap.values[:1]
        elif damage == "wider_heads":
            snap.keys = [torch.cat([k, k], dim=-1) for k in snap.keys]
        elif damage == "nan_keys":
            snap.keys[0].fill_(float("nan"))
        else:
            snap.cache = torch.zeros(1, 17, 9, dtype=torch.long)
        snap.save(f)
    conv = Conversation(model, sampling=GREEDY, seed=0, cache=PromptStateCache(disk))
    assert conv.start("NATM0", PROMPT) is False
    assert len(conv.notes) == 1 and "did not fit this model" in conv.notes[0] and "deleted" in conv.notes[0]
    reference = Conversation(model, sampling=GREEDY, seed=0)
    reference.start("NATM0", PROMPT)
    assert torch.equal(conv.state.cache, reference.state.cache)
    assert conv.respond(speech(1.0, 1), max_steps=5, early_stop=False).text_ids == \
        reference.respond(speech(1.0, 1), max_steps=5, early_stop=False).text_ids
    again = Conversation(model, sampling=GREEDY, cache=PromptStateCache(disk))
    assert again.start("NATM0", PROMPT) is True and again.notes == []  # recomputed and saved: said once


def test_duplex_steps_equal_offline(model):
    audio = speech(1.2, seed=5)
    voice = model.load_voice("NATF0")
    offline = run_offline(model, audio, voice=voice, text_tokens=model.tokenizer.encode_system_prompt(PROMPT),
                          sampling=GREEDY)
    conv = conversation(model)
    frames = np.pad(audio, (0, -len(audio) % FRAME_SIZE)).reshape(-1, FRAME_SIZE)
    out, pieces = [], []
    for frame in frames:
        pcm, text = conv.step(frame)
        out.append(pcm)
        pieces.append(text)
    np.testing.assert_allclose(np.concatenate(out)[:len(audio)], offline.pcm, atol=1e-6, rtol=0)
    assert pieces == [None if i in PAD_IDS else model.tokenizer.piece_text(i) for i in offline.text_ids]


def test_turns_and_duplex_share_one_conversation(model):
    conv = conversation(model)
    conv.respond(speech(0.5, seed=6), max_steps=4, early_stop=False)
    before = conv.frames_seen
    conv.step(np.zeros(FRAME_SIZE, np.float32))
    assert conv.frames_seen == before + 1
    conv.reset()
    assert conv.frames_seen == conv._start_snapshot.offset - 1


def test_diagnostic_turn_reports_times_and_probabilities(model):
    audio = speech(0.5, seed=7)
    conv = conversation(model)
    plain = conv.respond(audio, max_steps=6, early_stop=False)
    conv.reset()
    diag = conv.respond_diagnostic(audio, max_steps=6, early_stop=False)
    np.testing.assert_array_equal(diag.pcm, plain.pcm)
    d = diag.diagnostics
    assert [s.phase for s in d.steps] == ["user"] * diag.user_frames + ["answer"] * 6
    assert all(s.encode_ms > 0 and s.lm_ms > 0 and s.decode_ms > 0 for s in d.steps)
    probs = [s.text_prob for s in d.steps[1:]]  # the first token was scored before the turn began
    assert all(0.0 < p <= 1.0 for p in probs)
    assert d.context_used == conv.context_used and d.context_size == model.config.lm.context
    assert d.real_time_factor > 0 and "real-time factor" in d.summary()


def test_turn_beyond_the_context_scrolls_like_the_reference(model):
    conv = conversation(model, context=ContextSettings(refresh=False))
    context = model.config.lm.context  # 256 frames for the tiny model
    steps = context - conv.frames_seen + 20
    result = conv.respond(np.zeros(FRAME_SIZE, np.float32), max_steps=steps, early_stop=False)
    assert result.steps == steps and np.isfinite(result.pcm).all()
    assert conv.context_full and conv.context_used == context and conv.refresh_count == 0
    conv.reset()
    assert not conv.context_full


def test_cancel_stops_within_one_step(model):
    conv = conversation(model)
    cancel = threading.Event()
    got = 0
    stream = conv.respond_stream(np.zeros(FRAME_SIZE * 2, np.float32), max_steps=50, early_stop=False, cancel=cancel)
    for _ in stream:
        got += 1
        if got == 3:
            cancel.set()
    assert got == 3 and stream.result.end == TurnEnd.CANCELLED and stream.result.steps == 3


@pytest.mark.parametrize("script, end, steps", [
    pytest.param([(5, 0.5)] * 4 + [(3, 0.0)] * 40, TurnEnd.FINISHED, 4 + 15, id="speaks-then-quiet"),
    pytest.param([(3, 0.0)] * 60, TurnEnd.FINISHED, 50, id="never-answers"),
    pytest.param([(3, 0.0), (7, 0.0)] * 30, TurnEnd.MAX_STEPS, 60, id="words-keep-coming"),
    pytest.param([(3, 0.3)] * 60, TurnEnd.MAX_STEPS, 60, id="loud-without-words"),
])
def test_early_stop_rule(model, monkeypatch, script, end, steps):
    """The rule alone, with scripted frames (text id, amplitude) instead of the model."""
    conv = conversation(model, early_stop=EarlyStop(silent_frames=15, quiet_db=-40, no_answer_frames=50))
    frames = iter(script)

    def scripted(pcm, timing=None):
        text_id, amp = next(frames)
        return np.full(FRAME_SIZE, amp, np.float32), text_id

    monkeypatch.setattr(conv, "_frame", scripted)
    result = conv.respond(np.zeros(0, np.float32), max_steps=60)
    assert (result.end, result.steps) == (end, steps)


def test_frame_queue_drops_stale_frames():
    q = FrameQueue(capacity=3)
    for i in range(5):
        q.put(np.full(FRAME_SIZE, i, np.float32))
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0)[0] for _ in range(3)] == [2, 3, 4]
    assert q.get(timeout=0.01) is None


def test_prompt_states_are_kept_in_host_memory(tiny_config):
    """Cached post-prompt states cost the GPU nothing: a state on another device (meta here,
    standing in for CUDA) is captured into host tensors and applied back in place."""

    from ppx_desktop.engine.generator import Generator
    from ppx_desktop.engine.lm import LMModel
    from ppx_desktop.engine.sampling import SamplingConfig
    from ppx_desktop.session.statecache import PromptState

    lm = LMModel(tiny_config.lm, device="meta")
    gen = Generator(lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    state.offset = 11
    snap = PromptState.capture(state)
    assert snap.lm_offset == 10 and snap.keys[0].shape[2] == 10
    assert all(t.device.type == "cpu" for t in (snap.cache, snap.provided, *snap.keys, *snap.values))
    keys = state.lm.keys[0]
    snap.apply(state)
    assert state.lm.keys[0] is keys and state.offset == 11
