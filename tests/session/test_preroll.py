"""Answers on a GPU slower than real time: held back just enough, then played without a gap.

Time is a manual clock throughout: a fake frame step advances it by a chosen step time, so the
verdict is the same on an idle or an overloaded machine.
"""

from __future__ import annotations

import queue

import numpy as np
import pytest

from ppx_desktop.audio import AudioConfig, AudioIO
from ppx_desktop.audio.testdevice import TestDevice
from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.session import events as ev
from ppx_desktop.session.conversation import Chunk, TurnResult, TurnStream
from ppx_desktop.session.preroll import FRAME_S, PreRoll, StepTimes, hold_frames
from ppx_desktop.session.worker import InferenceWorker


class ManualClock:
    def __init__(self, on_advance=None) -> None:
        self.t = 0.0
        self.on_advance = on_advance

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        if self.on_advance is not None:
            self.on_advance(self.t)


def jitter(n: int, spread: float, seed: int = 0) -> np.ndarray:
    """Per-frame factors around 1 (a GPU's step times wander by a few per cent)."""
    return 1.0 + spread * (np.random.default_rng(seed).random(n) * 2 - 1)


def gaps(arrivals: list[float]) -> int:
    """Frames that arrive after they are due, playback running from the first arrival."""
    start = arrivals[0]
    return sum(t > start + i * FRAME_S + 1e-9 for i, t in enumerate(arrivals))


@pytest.mark.parametrize("steps, step_s, held", [
    pytest.param(75, 0.030, 1, id="fast-gpu-plays-at-once"),
    pytest.param(75, 0.080, 11, id="real-time-plus-margin"),
    pytest.param(75, 0.136, 38, id="offload-1.7x"),
    pytest.param(500, 0.136, 245, id="long-answer"),
    pytest.param(20, 1.0, 19, id="far-too-slow-waits-for-nearly-all"),
])
def test_hold_frames(steps, step_s, held):
    assert hold_frames(step_s, steps) == held


@pytest.mark.parametrize("factor", [0.5, 0.95, 1.0, 1.3, 1.7, 3.0])
@pytest.mark.parametrize("steps", [20, 75, 250])
def test_pre_roll_never_leaves_a_gap(factor, steps):
    times = StepTimes()
    times.add(factor * FRAME_S, 8)  # the pace seen on the user's frames
    clock, arrivals = ManualClock(), []
    gate = PreRoll(lambda pcm, text: arrivals.append(clock()), steps, times)
    for step in factor * FRAME_S * jitter(steps, 0.08, seed=steps):
        clock.advance(step)
        times.add(step)
        gate.push(None, None)
    gate.flush()
    assert len(arrivals) == steps and gaps(arrivals) == 0
    # And not much longer than needed: the last frame comes in within a frame of being due.
    last_due = arrivals[0] + (steps - 1) * FRAME_S
    assert clock() <= last_due + FRAME_S or factor <= 1.0


def test_cancelled_answer_plays_nothing_held():
    times = StepTimes()
    times.add(0.2, 4)
    delivered = []
    gate = PreRoll(lambda pcm, text: delivered.append(text), 50, times)
    for i in range(5):
        assert not gate.push(None, f"w{i}")
    assert gate.drop() == 5 and delivered == []


class SlowConversation:
    """A conversation whose frames take `step_s` (on the manual clock) each, as a slow GPU's do."""

    context_used, context_size = 10, 3000
    user_transcript = None  # no speech-to-text in this fake
    refresh_count, last_refresh = 0, None

    def close(self) -> None:
        pass

    def __init__(self, clock: ManualClock, step_s: float, spread: float = 0.08) -> None:
        self.clock, self.step_s, self.spread = clock, step_s, spread

    def respond_stream(self, audio, max_steps=75, early_stop=True, cancel=None, diagnostics=False):
        user_frames = -(-len(audio) // FRAME_SIZE)
        factors = jitter(user_frames + max_steps, self.spread, seed=max_steps)
        ids: list[int] = []

        def chunks():
            for f in factors[:user_frames]:
                self.clock.advance(self.step_s * f)
            for n, f in enumerate(factors[user_frames:]):
                self.clock.advance(self.step_s * f)
                ids.append(n)
                yield Chunk(np.full(FRAME_SIZE, 0.1, np.float32), f" w{n}", 10 + n, n)

        return TurnStream(chunks(), lambda: TurnResult(np.zeros(0, np.float32), " ".join(f"w{i}" for i in ids),
                                                      ids, "max_steps", len(ids), user_frames))


def run_turn(worker: InferenceWorker, events: queue.Queue, max_steps: int) -> list:
    worker.submit(ev.Respond(np.zeros(FRAME_SIZE * 25, np.float32), max_steps=max_steps, early_stop=False,
                             turn_id=1))
    seen = []
    while True:
        event = events.get(timeout=120)
        seen.append(event)
        if isinstance(event, ev.TurnFinished):
            return seen


def test_slow_gpu_answer_plays_through_the_real_audio_path_without_a_gap():
    # The worker's answer goes to a real AudioIO on a test sound card whose callbacks run on the
    # manual clock: one 80 ms block each time the fake step moves the clock past a block.
    device = TestDevice(manual=True)
    audio = AudioIO(AudioConfig(echo="off", monitor_echo=False, stall_timeout_s=3600.0), backend=device)
    blocks = [0]

    def run_sound_card(t: float) -> None:
        while (blocks[0] + 1) * FRAME_S <= t + 1e-9:
            device.advance(1)
            blocks[0] += 1

    clock = ManualClock(run_sound_card)
    events: queue.Queue = queue.Queue()
    worker = InferenceWorker(events.put, audio_sink=audio.write_frame)
    worker.clock = clock
    worker.conversation = SlowConversation(clock, step_s=1.7 * FRAME_S)  # layer offload's pace
    audio.start()
    worker.start()
    try:
        seen = run_turn(worker, events, max_steps=75)
        clock.advance(10.0)  # let the sound card play out the rest
    finally:
        assert worker.shutdown(timeout=10.0)
        audio.close()
    states = [e.state for e in seen if isinstance(e, ev.Status)]
    assert states[:3] == ["thinking", "buffering", "speaking"]  # the window shows "preparing the answer"
    done = seen[-1]
    assert (done.end, done.steps, done.text) == ("max_steps", 75, " ".join(f"w{i}" for i in range(75)))
    played = device.played()
    loud = np.abs(played.reshape(-1, FRAME_SIZE)).max(axis=1) > 0.05
    first, last = int(np.argmax(loud)), len(loud) - 1 - int(np.argmax(loud[::-1]))
    assert last - first + 1 == 75 and loud[first:last + 1].all()  # 75 frames in a row: no gap inside
    stats = [e for e in seen if isinstance(e, ev.StepStats)]
    assert stats and stats[-1].wait_s > 0 and stats[-1].rtf == pytest.approx(1.7, rel=0.15)


def test_fast_gpu_answer_starts_at_the_first_frame():
    clock = ManualClock()
    events: queue.Queue = queue.Queue()
    arrivals = []
    worker = InferenceWorker(events.put, audio_sink=lambda pcm: arrivals.append(clock()))
    worker.clock = clock
    worker.conversation = SlowConversation(clock, step_s=0.3 * FRAME_S)
    worker.start()
    try:
        seen = run_turn(worker, events, max_steps=30)
    finally:
        assert worker.shutdown(timeout=10.0)
    assert "buffering" not in [e.state for e in seen if isinstance(e, ev.Status)]
    user_phase = 25 * 0.3 * FRAME_S
    assert arrivals[0] <= user_phase + 0.3 * FRAME_S * 1.1 and len(arrivals) == 30
