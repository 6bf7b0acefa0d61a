"""The inference thread: commands in, events out, cancel, errors, duplex queues, thread ownership."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.session import events as ev
from ppx_desktop.session.worker import InferenceWorker


class Recorder:
    """Collects events from the worker thread; waits for one without sleeping blindly."""

    def __init__(self):
        self.events: list = []
        self._q: queue.Queue = queue.Queue()

    def __call__(self, event):
        self.events.append(event)
        self._q.put(event)

    def wait_for(self, kind, timeout: float = 120.0, where=lambda e: True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._q.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                break
            if isinstance(event, ev.ErrorEvent) and kind is not ev.ErrorEvent:
                raise AssertionError(f"worker error: {event}")
            if isinstance(event, kind) and where(event):
                return event
        raise AssertionError(f"no {kind.__name__} within {timeout} s; got {[type(e).__name__ for e in self.events]}")

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def worker(tiny_model_dir):
    rec = Recorder()
    played = []
    w = InferenceWorker(rec, audio_sink=played.append)
    w.start()
    w.submit(ev.LoadModel(model_dir=tiny_model_dir, device="cpu"))
    rec.wait_for(ev.ModelLoaded)
    w.submit(ev.StartConversation("NATF0", "You enjoy having a good conversation.", SamplingConfig.greedy(), 0))
    rec.wait_for(ev.ConversationReady)
    w.rec, w.played = rec, played
    yield w
    assert w.shutdown(timeout=5.0)


def test_turn_streams_text_and_audio_and_model_runs_only_on_the_worker_thread(worker):
    threads = set()
    model = worker.model
    hooks = [m.register_forward_pre_hook(lambda *_: threads.add(threading.current_thread()))
             for m in (model.lm, model.lm.transformer, model.mimi)]
    try:
        worker.submit(ev.Respond(np.zeros(FRAME_SIZE * 3, np.float32), max_steps=10, early_stop=False, turn_id=7))
        done = worker.rec.wait_for(ev.TurnFinished)
    finally:
        for h in hooks:
            h.remove()
    assert threads == {worker.thread}
    assert (done.turn_id, done.mode, done.end, done.steps) == (7, "turn", "max_steps", 10)
    audio = [e for e in worker.rec.of(ev.AgentAudio) if e.turn_id == 7]
    assert len(audio) == 10 and len(worker.played) == 10
    np.testing.assert_array_equal(np.concatenate(worker.played), np.concatenate([e.pcm for e in audio]))
    assert "".join(e.text for e in worker.rec.of(ev.AgentText)).strip() == done.text
    # "buffering" comes between when this (loaded) machine runs the tiny model slower than real time.
    states = [e.state for e in worker.rec.of(ev.Status) if e.state != "buffering"]
    assert states[-3:] == ["thinking", "speaking", "idle"]
    stats = worker.rec.of(ev.StepStats)[-1]
    assert stats.context_size == 256 and 0 < stats.context_used <= 256 and stats.step_ms > 0


def test_context_refreshes_are_events_and_statistics(worker):
    """The demo model's context is 256 frames: the second long turn would not fit beside the prompt."""
    for turn in (1, 2):
        worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=150, early_stop=False, turn_id=turn))
        worker.rec.wait_for(ev.TurnFinished, where=lambda e, t=turn: e.turn_id == t)
    [refreshed] = worker.rec.of(ev.ContextRefreshed)
    # Kept: what leaves room for the turn (its user frame and 150 answer frames) beside the prompt.
    assert refreshed.reason == "before the turn" and refreshed.kept_frames == worker.conversation.keeper.room - 151
    assert refreshed.frames_after < refreshed.frames_before and refreshed.stall_ms > 0
    stats = worker.rec.of(ev.StepStats)[-1]
    assert stats.refreshes == 1 and stats.refresh_ms == refreshed.stall_ms and stats.context_used < 256
    # Live duplex may hold the frames up only as long as the bounded input queue absorbs.
    assert worker.conversation.keeper.settings.stall_budget_ms == 0.75 * worker.input.capacity * 80


class ActOnFirstFrame:
    """An audio sink that calls `action` from inside the first step (on the worker thread) and
    keeps every frame delivered after it: "within one step" means that list stays empty."""

    def __init__(self, action):
        self.action, self.first, self.after = action, threading.Event(), []

    def __call__(self, pcm):
        if self.first.is_set():
            self.after.append(pcm)
        else:
            self.first.set()
            self.action()


def test_cancel_stops_a_turn_within_one_step(worker):
    worker.audio_sink = sink = ActOnFirstFrame(worker.cancel)  # at most the current step completes
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=400, early_stop=False, turn_id=1))
    done = worker.rec.wait_for(ev.TurnFinished)
    assert done.end == "cancelled" and done.steps <= 1 and sink.after == []
    # The next turn is not affected by the earlier cancel.
    worker.audio_sink = None
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=2, early_stop=False, turn_id=2))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 2).end == "max_steps"


def test_shutdown_during_a_turn_returns_within_one_step(worker):
    # Counted in steps, not seconds: a loaded CI machine can take seconds for one tiny step.
    worker.audio_sink = sink = ActOnFirstFrame(worker.request_shutdown)  # no further step may run
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=2000, early_stop=False))
    assert sink.first.wait(120)
    assert worker.wait(timeout=60.0)
    assert sink.after == []
    assert worker.rec.of(ev.TurnFinished)[-1].end == "cancelled"
    assert worker.rec.events[-1] == ev.Status("stopped")


def test_duplex_is_refused_with_layers_in_host_memory(worker):
    from ppx_desktop.engine.offload import LayerStreamer, OffloadPlan

    model = worker.model  # idle between commands: safe to change from here
    LayerStreamer(model.lm, OffloadPlan((1,), 0), model.device)
    worker.submit(ev.StartDuplex(turn_id=9))
    error = worker.rec.wait_for(ev.ErrorEvent)
    assert error.kind == "input" and "live duplex needs the whole model on the GPU" in error.message
    assert "push-to-talk" in error.message
    # Turn-based still works, layer by layer from host memory.
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=3, early_stop=False, turn_id=10))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 10).steps == 3
    assert model.lm.streamer.copies > 0


def test_duplex_runs_bounded_and_stops(worker):
    worker.submit(ev.StartDuplex(turn_id=3))
    worker.rec.wait_for(ev.TurnStarted, where=lambda e: e.mode == "duplex")

    def wait_played(n: int) -> None:
        deadline = time.monotonic() + 120  # a tiny model; the margin is for a loaded CI machine
        while len(worker.played) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(worker.played) >= n

    # In real time, one frame at a time: every frame is stepped.
    for i in range(4):
        worker.push_frame(np.zeros(FRAME_SIZE, np.float32))
        wait_played(i + 1)
    assert worker.input.dropped == 0
    # A burst far beyond real time: only the newest frames are kept, the rest are counted.
    for _ in range(40):
        worker.push_frame(np.zeros(FRAME_SIZE, np.float32))
    wait_played(4 + 40 - worker.input.dropped)  # what was kept is still stepped
    worker.submit(ev.StopDuplex())
    done = worker.rec.wait_for(ev.TurnFinished)
    assert done.mode == "duplex" and done.end == "stopped"
    assert done.steps == 44 - worker.input.dropped
    # The 40 pushes take microseconds; a step takes milliseconds: the worker takes at most a frame
    # or two from the burst while it arrives, the queue keeps `capacity`, the rest is dropped.
    assert worker.input.dropped >= 40 - worker.input.capacity - 2
    assert len(worker.played) == done.steps
    # After duplex the conversation continues turn-based.
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=2, early_stop=False, turn_id=4))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 4).steps == 2


def test_errors_are_events_and_the_thread_survives(tiny_model_dir, tmp_path):
    rec = Recorder()
    w = InferenceWorker(rec)
    w.start()
    try:
        w.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32)))
        err = rec.wait_for(ev.ErrorEvent)
        assert err.kind == "input" and "voice" in err.message and err.command == "Respond"
        w.submit(ev.LoadModel(model_dir=tmp_path / "nowhere", device="cpu"))
        err = rec.wait_for(ev.ErrorEvent)
        assert err.kind == "model" and "not found" in err.message
        w.submit(ev.LoadModel(model_dir=tiny_model_dir, device="cpu"))
        loaded = rec.wait_for(ev.ModelLoaded)
        assert set(loaded.voices) >= {"NATF0", "NATM0"} and loaded.offloaded_layers == 0
        w.submit(ev.StartConversation("NOBODY"))
        err = rec.wait_for(ev.ErrorEvent)
        assert err.kind == "input" and "NATF0" in err.message  # lists the voices there are
        w.submit(ev.StartConversation("NATM0", ""))
        assert rec.wait_for(ev.ConversationReady).voice == "NATM0"
    finally:
        assert w.shutdown(timeout=5.0)


def test_an_adopted_model_replaces_the_loaded_one(worker, tiny_model_dir):
    """UseModel takes a model built elsewhere in the process (the GPU acceptance run's random
    released-size model) exactly as LoadModel would have loaded it."""
    from ppx_desktop.engine.model import load_model

    model = load_model(tiny_model_dir, device="cpu")
    worker.submit(ev.UseModel(model))
    loaded = worker.rec.wait_for(ev.ModelLoaded)
    assert worker.model is model and worker.conversation is None  # the old conversation is gone
    assert (loaded.model_dir, loaded.device, loaded.quant) == (str(tiny_model_dir), "cpu", "none")
    assert set(loaded.voices) >= {"NATF0", "NATM0"}
    assert [e.state for e in worker.rec.of(ev.Status)][-2:] == ["warming_up", "ready"]
    worker.submit(ev.StartConversation("NATM0", "", SamplingConfig.greedy(), 0))
    worker.rec.wait_for(ev.ConversationReady, where=lambda e: e.voice == "NATM0")
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE * 2, np.float32), max_steps=4, early_stop=False, turn_id=5))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 5).steps == 4
    assert worker.conversation.model is model


# --- conversation switching, voices and memory (issue 14) -------------------------------------


def test_a_new_voice_reuses_the_conversation_in_place_and_answers_as_a_fresh_one(worker, tiny_model_dir):
    from ppx_desktop.engine.model import load_model
    from ppx_desktop.session.conversation import Conversation

    first = worker.conversation
    buffers = (first.state.cache.data_ptr(), first.state.lm.keys[0].data_ptr())
    worker.submit(ev.StartConversation("VARM0", "You are a pirate.", SamplingConfig.greedy(), 0))
    worker.rec.wait_for(ev.ConversationReady, where=lambda e: e.voice == "VARM0")
    assert worker.conversation is first  # same state buffers, same captured graphs: no new memory
    assert (first.state.cache.data_ptr(), first.state.lm.keys[0].data_ptr()) == buffers
    audio = np.zeros(FRAME_SIZE * 4, np.float32)
    worker.submit(ev.Respond(audio, max_steps=8, early_stop=False, turn_id=3))
    got = worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 3)
    fresh = Conversation(load_model(tiny_model_dir, device="cpu"), sampling=SamplingConfig.greedy(), seed=0)
    fresh.start("VARM0", "You are a pirate.")
    assert got.text == fresh.respond(audio, max_steps=8, early_stop=False).text
    # Other sampling settings need another conversation: the old one goes first.
    worker.submit(ev.StartConversation("NATF0", "", SamplingConfig(temp_text=0.5), 1))
    worker.rec.wait_for(ev.ConversationReady, where=lambda e: e.voice == "NATF0")
    assert worker.conversation is not first


def test_custom_voice_is_made_on_the_inference_thread(worker, tmp_path):
    from ppx_desktop.audio.files import write_wav_pcm16
    from ppx_desktop.engine.tiny import synthetic_voice

    wav = tmp_path / "me.wav"
    write_wav_pcm16(wav, np.concatenate([synthetic_voice(i, seconds=4.0) for i in range(3)]))
    offset = worker.conversation.state.offset
    worker.submit(ev.CreateVoice("Mine", wav, consent=True))
    made = worker.rec.wait_for(ev.VoiceCreated)
    assert made.name == "Mine" and made.path.endswith("Mine.pt")
    assert worker.conversation.state.offset == offset  # the conversation was not touched
    worker.submit(ev.CreateVoice("Mine", wav, consent=False))
    error = worker.rec.wait_for(ev.ErrorEvent)
    assert "consent" in error.message and error.command == "CreateVoice"


def test_out_of_memory_leaves_the_worker_usable_and_names_a_choice(worker, monkeypatch):
    import torch

    from ppx_desktop.session import conversation as conv_module

    real_start = conv_module.Conversation.start

    def oom(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(conv_module.Conversation, "start", oom)
    worker.submit(ev.StartConversation("VARF0", "", SamplingConfig.greedy(), 0))
    error = worker.rec.wait_for(ev.ErrorEvent)
    assert error.kind == "oom" and "ran out of memory" in error.message and "Close other programs" in error.message
    monkeypatch.setattr(conv_module.Conversation, "start", real_start)
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE * 2, np.float32), max_steps=3, early_stop=False, turn_id=9))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 9).steps == 3


def test_the_users_words_come_out_live_and_final(tiny_model_dir):
    """Transcription on: the speech-to-text model rides in the frame; a turn's words arrive as a
    growing line, then a final one with times; turning it off frees it and restarts the conversation."""
    from ppx_desktop.engine.tiny import synthetic_voice

    rec = Recorder()
    w = InferenceWorker(rec)
    w.start()
    try:
        w.submit(ev.LoadModel(model_dir=tiny_model_dir, device="cpu", transcription=True))
        loaded = rec.wait_for(ev.ModelLoaded)
        assert loaded.transcription == "float32" and w.transcriber is not None
        w.submit(ev.StartConversation("NATF0", "", SamplingConfig.greedy(), 0))
        rec.wait_for(ev.ConversationReady)
        speech = np.concatenate([synthetic_voice(i, seconds=1.0) for i in range(2)])
        w.submit(ev.Respond(speech, max_steps=12, early_stop=False, turn_id=4))
        rec.wait_for(ev.TurnFinished)
        lines = [e for e in rec.of(ev.UserText) if e.turn_id == 4]
        assert lines and lines[-1].final and not lines[0].final and lines[-1].text
        assert 0 <= lines[-1].start <= lines[-1].end <= (len(speech) / 24000 + 12 * 0.08)
        w.submit(ev.SetTranscription(False))
        assert rec.wait_for(ev.TranscriptionChanged).precision == ""
        rec.wait_for(ev.ConversationReady)
        assert w.transcriber is None and w.conversation.transcriber is None
    finally:
        assert w.shutdown(timeout=10.0)


def test_transcription_without_the_model_says_why(tmp_path, tiny_model_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model, ignore=shutil.ignore_patterns("stt"))
    rec = Recorder()
    w = InferenceWorker(rec)
    w.start()
    try:
        w.submit(ev.LoadModel(model_dir=model, device="cpu", transcription=True))
        notice = rec.wait_for(ev.Notice)
        assert "not downloaded" in notice.message and "--with-transcription" in notice.message
        assert rec.wait_for(ev.ModelLoaded).transcription == ""
    finally:
        assert w.shutdown(timeout=10.0)
def test_voice_preview_plays_a_sample_and_the_conversation_carries_on_unchanged(worker):
    # Greedy sampling: the same turns from the same state give the same answer, bit for bit.
    speech = 0.1 * np.sin(np.arange(FRAME_SIZE * 6) / 7.0).astype(np.float32)

    def two_turns(preview_between: bool) -> list[np.ndarray]:
        worker.submit(ev.Reset())
        worker.submit(ev.Respond(speech, max_steps=6, early_stop=False, turn_id=1))
        worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 1)
        if preview_between:
            worker.submit(ev.PreviewVoice("NATM0", "You greet people.", max_steps=8))
            sample = worker.rec.wait_for(ev.VoicePreview)
            assert sample.voice == "NATM0" and 0 < len(sample.pcm) <= 8 * FRAME_SIZE
        start = len(worker.played)
        worker.submit(ev.Respond(speech, max_steps=6, early_stop=False, turn_id=2))
        worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 2)
        return worker.played[start:]

    plain = two_turns(False)
    with_preview = two_turns(True)
    assert len(plain) == len(with_preview) == 6
    np.testing.assert_array_equal(np.concatenate(plain), np.concatenate(with_preview))
    assert worker.conversation.voice_name == "NATF0"  # back to the conversation's own voice
    assert "previewing" in [e.state for e in worker.rec.of(ev.Status)]


def test_a_streamed_turn_scores_every_frame_live_and_answers_as_the_whole_turn(tiny_model_dir):
    """Semantic end of turn: the user's frames run as they arrive, each followed by its end-of-turn
    score (before the app has ended the turn); the answer is the one `Respond` gives for the same audio."""
    from ppx_desktop.engine.tiny import synthetic_voice

    rec = Recorder()
    w = InferenceWorker(rec)
    w.start()
    try:
        w.submit(ev.LoadModel(model_dir=tiny_model_dir, device="cpu", transcription=True))
        rec.wait_for(ev.ModelLoaded)
        w.submit(ev.StartConversation("NATF0", "", SamplingConfig.greedy(), 0))
        rec.wait_for(ev.ConversationReady)
        speech = np.concatenate([synthetic_voice(i, seconds=0.8) for i in range(2)])[: 20 * FRAME_SIZE]
        w.push_turn_frame(2, np.ones(FRAME_SIZE, np.float32))  # a cancelled turn's frame: never heard
        w.submit(ev.StartTurn(speech[: 6 * FRAME_SIZE], max_steps=8, early_stop=False, turn_id=3))
        for i in range(6, 20):
            rec.wait_for(ev.EndOfTurnScore, where=lambda e, i=i: e.frame == i - 1)  # scored before the next comes
            w.push_turn_frame(3, speech[i * FRAME_SIZE:(i + 1) * FRAME_SIZE])
        assert not rec.of(ev.AgentAudio)  # nothing answered while the user has the floor
        w.submit(ev.EndTurn(3, "semantic"))
        streamed = rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 3)
        scores = [e for e in rec.of(ev.EndOfTurnScore) if e.turn_id == 3]
        assert [e.frame for e in scores] == list(range(20))
        assert all(0.0 <= e.probability <= 1.0 for e in scores)
        assert streamed.user_audio_s == pytest.approx(20 * 0.08) and streamed.steps == 8

        w.submit(ev.Reset())
        rec.wait_for(ev.Status, where=lambda e: e.state == "idle")
        w.submit(ev.Respond(speech, max_steps=8, early_stop=False, turn_id=4))
        whole = rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 4)
        pcm = {t: np.concatenate([e.pcm for e in rec.of(ev.AgentAudio) if e.turn_id == t]) for t in (3, 4)}
        np.testing.assert_array_equal(pcm[3], pcm[4])
        assert streamed.text == whole.text
        final = {t: [e.text for e in rec.of(ev.UserText) if e.turn_id == t and e.final] for t in (3, 4)}
        assert final[3] == final[4]
    finally:
        assert w.shutdown(timeout=10.0)


def test_a_streamed_turn_without_the_speech_to_text_model_says_so_once(worker):
    for turn_id in (5, 6):
        worker.submit(ev.StartTurn(np.zeros(3 * FRAME_SIZE, np.float32), max_steps=2, early_stop=False,
                                   turn_id=turn_id))
        worker.submit(ev.EndTurn(turn_id, "silence"))
        worker.rec.wait_for(ev.TurnFinished, where=lambda e, t=turn_id: e.turn_id == t)
    notices = [e for e in worker.rec.of(ev.Notice) if e.kind == "semantic"]
    assert len(notices) == 1 and "speech-to-text" in notices[0].message and "silence" in notices[0].message
    scores = [e for e in worker.rec.of(ev.EndOfTurnScore) if e.turn_id == 5]
    assert len(scores) == 3 and all(np.isnan(e.probability) for e in scores)
    worker.submit(ev.EndTurn(5, "silence"))  # a late end of a finished turn is ignored
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE, np.float32), max_steps=2, early_stop=False, turn_id=7))
    assert worker.rec.wait_for(ev.TurnFinished, where=lambda e: e.turn_id == 7).steps == 2
