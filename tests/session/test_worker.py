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
