"""Long conversations: the context refresh keeps the prompt in view (session/context.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from livebytes import LiveBytes, census
from testkit import ForbidHostSync

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.model import load_model
from ppx_desktop.engine.prefill import Prefiller
from ppx_desktop.engine.prompts import run_prompts
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.tiny import synthetic_voice
from ppx_desktop.session.context import ContextKeeper, ContextSettings, Refresh
from ppx_desktop.session.conversation import Conversation

GREEDY = SamplingConfig.greedy()
PROMPT = "You enjoy having a good conversation."
SILENCE = np.zeros(FRAME_SIZE, np.float32)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu")


def talk(frames: int, seed: int = 0):
    """The user's side: 3 s of speech, 3 s of silence, and so on."""
    speech = synthetic_voice(seed % 4, 3.04, seed=seed).reshape(-1, FRAME_SIZE)  # 38 frames
    for i in range(frames):
        yield speech[i % len(speech)] if (i // len(speech)) % 2 == 0 else SILENCE


def started(model, **settings) -> Conversation:
    conv = Conversation(model, sampling=GREEDY, seed=0, context=ContextSettings(**settings))
    conv.start("NATF0", PROMPT)
    return conv


# --- the policy alone -----------------------------------------------------------------------


def keeper(window=100, prompt=20, recorded=70, **settings) -> ContextKeeper:
    k = ContextKeeper(ContextSettings(**settings), window, 17)
    k.start(prompt)
    for i in range(recorded):
        k.record(prompt + i, np.full(17, i))
    return k


def test_turn_based_refreshes_only_before_a_turn_that_would_not_fit():
    k = keeper(history_frames=30)
    assert k.room == 80 and k.before_turn(frames_seen=60, need=40) is None  # fits: 100 frames
    assert k.before_turn(frames_seen=60, need=41) == 30  # the setting
    assert k.before_turn(frames_seen=60, need=70) == 10  # what leaves room for the turn
    assert k.before_turn(frames_seen=60, need=120) == 0  # longer than the context: refreshes mid-turn too
    assert k.before_frame(frames_seen=99, live=False) is None
    assert k.before_frame(frames_seen=100, live=False) == (30, "deadline")
    np.testing.assert_array_equal(k.history.last(2), [np.full(17, 68), np.full(17, 69)])
    assert keeper(refresh=False).before_frame(100, False) is None  # scrolls like the reference
    assert keeper(prompt=90).before_frame(100, False) is None  # a prompt too long to keep beside anything


def test_duplex_waits_for_a_quiet_moment_and_caps_the_stall():
    k = keeper(history_frames=60, quiet_frames=3, lookahead_frames=15, stall_budget_ms=50.0)
    loud, quiet = np.full(FRAME_SIZE, 0.3, np.float32), SILENCE
    for _ in range(5):
        k.observe(quiet, quiet, 3)
    assert k.before_frame(frames_seen=84, live=True) is None  # quiet, but the end is not near yet
    k.observe(quiet, loud, 3)  # the agent speaks
    assert k.before_frame(frames_seen=90, live=True) is None
    k.observe(quiet, quiet, 7)  # a word without sound is still speech
    k.observe(loud, quiet, 3)  # the user speaks
    for _ in range(2):
        k.observe(quiet, quiet, 0)
    assert k.before_frame(frames_seen=90, live=True) is None  # two quiet frames are not enough
    k.observe(quiet, quiet, 3)
    assert k.before_frame(frames_seen=90, live=True) == (50, "quiet moment")  # room 80 - 2 x lookahead 15
    k.measured(ms=20.0, frames=40)  # 0.5 ms per frame replayed: 50 ms hold 99 frames with the one in flight
    k.measured(ms=20.0, frames=20)  # 1 ms per frame
    assert k.before_frame(frames_seen=90, live=True) == (49, "quiet moment")
    assert k.before_frame(frames_seen=100, live=True) == (40, "deadline")  # room // 2, under the cap
    assert k.before_frame(frames_seen=100, live=False) == (40, "deadline")
    k.refreshed(Refresh(100, 40, 60, 45.0, "deadline"))
    assert k.count == 1 and k.ms_per_frame == 45.0 / 41


# --- the conversation -----------------------------------------------------------------------


def _copy(gen: Generator, state):
    """A detached copy of a generator state (test bookkeeping only)."""
    out = gen.init_state(1)
    out.cache.copy_(state.cache)
    out.provided.copy_(state.provided)
    out.provided_host, out.offset = [row[:] for row in state.provided_host], state.offset
    out.lm.copy_(state.lm)
    return out


def test_after_three_context_lengths_the_state_is_a_fresh_prefill_of_prompt_and_history(model):
    conv = started(model, history_frames=60)
    gen, window, context = conv.gen, model.config.lm.context - 1, model.config.lm.context
    snapshot = conv._start_snapshot
    seen = {}
    real_refresh = conv.prefiller.refresh

    def spy(state, prompt, kept):  # what went in, and the state the refresh built
        seen.update(before=_copy(gen, state), kept=kept.clone())
        real_refresh(state, prompt, kept)
        seen["after"] = _copy(gen, state)

    conv.prefiller.refresh = spy
    steps, most = 0, 0
    for frame in talk(10 * context):
        conv.step(frame)
        steps += 1
        most = max(most, conv.frames_seen)
        if steps >= 3 * context and "after" in seen and seen["after"].offset + 1 == conv.state.offset:
            break  # a refresh in the step just taken, past three context lengths
    assert conv.refresh_count >= 3 and most <= window  # the prompt never left the window
    assert all(r.kept_frames == 60 and r.reason == "deadline" for r in conv.keeper.recent)  # no pauses here

    before, ours = seen["before"], seen["after"]
    text = model.tokenizer.encode_system_prompt(PROMPT)
    d, ct = gen.delays, gen.ct
    cols = [(before.offset - 1 + d[k]) % ct for k in range(17)]  # the frame in flight
    pending = torch.stack([before.cache[:, k, c] for k, c in enumerate(cols)], dim=1)[..., None]
    frames = torch.cat([seen["kept"], pending], dim=2)  # [1, 17, 61]
    batched, stepwise = gen.init_state(1), gen.init_state(1)
    Prefiller(gen).prompts(batched, model.config.prompt, voice=model.load_voice("NATF0"), text_tokens=text)
    run_prompts(gen, stepwise, model.config.prompt, voice=model.load_voice("NATF0"), text_tokens=text)
    assert batched.offset == stepwise.offset == snapshot.offset
    Prefiller(gen).frames(batched, frames)
    for s in range(frames.shape[-1]):
        gen.step(stepwise, user=frames[:, 9:, s:s + 1], agent=frames[:, 1:9, s:s + 1], text=frames[:, 0, s])
    written = ours.offset - 1
    assert ours.offset == batched.offset == stepwise.offset == snapshot.offset + 61
    assert torch.equal(ours.lm.offset, batched.lm.offset) and torch.equal(ours.cache, stepwise.cache)
    for a, b, c in zip(ours.lm.keys + ours.lm.values, batched.lm.keys + batched.lm.values,
                       stepwise.lm.keys + stepwise.lm.values):
        assert torch.equal(a[:, :, :written], b[:, :, :written])  # the same batched computation
        torch.testing.assert_close(a[:, :, :written], c[:, :, :written], atol=2e-6, rtol=1e-5)
    # Forced flags: the forced replay's, except the frame in flight keeps what the live state had.
    expected = stepwise.provided.clone()
    for k, c in enumerate(cols):
        expected[:, k, (ours.offset - 1 + d[k]) % ct] = before.provided[:, k, c]
    assert torch.equal(ours.provided, expected) and not ours.provided[0, 1:9, ours.offset % ct].any()
    assert ours.provided_host == [[bool(v) for v in row] for row in expected[0].tolist()]
    batched.provided.copy_(expected)  # the frame in flight, as it was: its agent codes are still to come
    batched.provided_host = [row[:] for row in ours.provided_host]
    # The persona prompt's keys are still in the cache, untouched.
    n_voice = len(model.load_voice("NATF0").embeddings) + 1
    persona = slice(n_voice + 6, n_voice + 6 + len(text))
    for a, b in zip(ours.lm.keys, snapshot.keys):
        assert torch.equal(a[:, :, persona], b[:, :, persona])
    # And the conversation goes on the same way from both.
    user = torch.randint(0, 32, (1, 8, 12), generator=torch.Generator().manual_seed(1))
    for t in range(12):
        a = gen.step(ours, user=user[:, :, t:t + 1]).tokens
        b = gen.step(batched, user=user[:, :, t:t + 1]).tokens
        assert torch.equal(a, b), t


def test_turns_refresh_between_turns_and_diagnostics_say_so(model):
    conv = started(model, history_frames=40)
    results = [conv.respond_diagnostic(speech, max_steps=40, early_stop=False)
               for speech in [synthetic_voice(i % 4, 1.0, seed=i) for i in range(6)]]
    assert conv.refresh_count >= 1
    refreshed = [r for r in results if r.diagnostics.refreshes]
    assert refreshed and all(r.diagnostics.refreshes[0].reason == "before the turn" for r in refreshed)
    assert all(r.steps == 40 for r in results)
    assert "context refreshed (before the turn)" in refreshed[0].diagnostics.summary()
    assert conv.frames_seen < model.config.lm.context - 1


def test_a_turn_longer_than_the_context_refreshes_inside_it(model):
    conv = started(model, history_frames=60)
    steps = model.config.lm.context + 40
    result = conv.respond(SILENCE, max_steps=steps, early_stop=False)
    assert result.steps == steps and not conv.context_full
    assert [r.reason for r in conv.keeper.recent][-1] == "deadline"


def test_live_duplex_refreshes_at_a_quiet_moment_within_the_stall_budget(model, monkeypatch):
    """The demo model's random voice never pauses, so its side is scripted quiet from frame 150 on;
    the refresh then runs for real."""
    conv = started(model, history_frames=150, quiet_frames=4, lookahead_frames=40, stall_budget_ms=1e4)
    assert conv.keeper.ms_per_frame > 0  # measured by the trial replay at the start
    frames_seen = []
    observe = conv.keeper.observe
    monkeypatch.setattr(conv.keeper, "observe", lambda user, agent, text: observe(
        user, agent if len(frames_seen) < 150 else SILENCE, text if len(frames_seen) < 150 else 3))
    for frame in talk(300):
        if conv.refresh_count:
            break
        conv.step(SILENCE if len(frames_seen) >= 150 else frame)
        frames_seen.append(conv.frames_seen)
    r = conv.last_refresh
    window, room = model.config.lm.context - 1, conv.keeper.room
    look = min(40, room // 4)
    assert r.reason == "quiet moment" and r.frames_before >= window - look and r.stall_ms > 0
    assert r.kept_frames == min(150, room - 2 * look)
    # A tight budget: the replay keeps what the measured speed replays within it.
    tight = started(model, stall_budget_ms=20.0)
    rate = tight.keeper.ms_per_frame
    for frame in talk(300):
        tight.step(frame)
    assert tight.last_refresh.reason == "deadline"
    assert tight.last_refresh.kept_frames <= max(0, int(20.0 / rate) - 1)


def test_recording_and_refreshing_add_no_host_sync(model):
    """The history comes from the frame step's one copy; the refresh reads no device value either."""
    conv = started(model, history_frames=60)
    window = model.config.lm.context - 1
    frames = talk(window + 10)
    while conv.frames_seen < window - 3:
        conv.step(next(frames))
    with ForbidHostSync():
        for _ in range(6):
            conv.step(next(frames))
    assert conv.refresh_count == 1 and conv.keeper.history.count >= 60


@pytest.mark.slow
def test_memory_does_not_grow_over_a_30_minute_conversation(model):
    """22,500 frames (30 minutes of 80 ms frames), live and in turns, about 200 refreshes of the
    demo model's 256-frame context: the bytes of every live tensor and array stay the same from
    one checkpoint to the next, and a whole refresh cycle leaves no allocation behind."""
    conv = started(model)
    minute, checkpoints = 750, {}
    cycles: list[int] = []
    user = talk(30 * minute)
    for m in range(1, 31):
        if m % 5 == 0:  # a minute of turns now and then: 5 x (25 frames of user speech + 125 answering)
            for _ in range(5):
                conv.respond(synthetic_voice(m % 4, 2.0, seed=m), max_steps=125, early_stop=False)
        else:
            for _ in range(minute):
                conv.step(next(user))
        if m == 6:  # one refresh cycle, allocation by allocation
            start = conv.refresh_count
            while conv.refresh_count == start:
                conv.step(SILENCE)
            with LiveBytes() as mem:
                while conv.refresh_count == start + 1:
                    conv.step(SILENCE)
            cycles.append(mem.live)
        if m in (10, 20, 30):
            checkpoints[m] = census()
    assert conv.refresh_count > 150 and not conv.context_full  # 202 here
    assert cycles == [0]
    assert checkpoints[10][0] == checkpoints[20][0] == checkpoints[30][0]
    assert checkpoints[30][1] - checkpoints[10][1] < 500  # Python objects: no per-frame or per-refresh leak
