"""ConversationController with the real AudioIO on the test device, the real turn detector and a fake worker."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ppx_desktop.audio import AudioConfig, AudioIO, VadConfig
from ppx_desktop.audio.testdevice import TestDevice
from ppx_desktop.session.controller import ConversationController, ListenState, UserTurn
from ppx_desktop.session.events import (
    EndOfTurnScore,
    EndTurn,
    Respond,
    StartDuplex,
    StartTurn,
    StopDuplex,
    TurnFinished,
)

SPEECH = Path(__file__).resolve().parents[1] / "audio" / "data" / "near_speech.wav"
FRAME = 1920


class FakeWorker:
    """Records what the controller asks of the inference thread; the test plays the model's part."""

    def __init__(self) -> None:
        self.commands: list[object] = []
        self.pushed: list[np.ndarray] = []
        self.turn_frames: list[tuple[int, np.ndarray]] = []  # a streamed turn's frames (semantic end of turn)
        self.cancels = 0
        self.busy = False
        self.audio_sink = None

    def submit(self, command) -> None:
        self.commands.append(command)

    def push_frame(self, frame) -> None:
        self.pushed.append(frame)

    def push_turn_frame(self, turn_id, frame) -> None:
        self.turn_frames.append((turn_id, frame))

    def cancel(self) -> None:
        self.cancels += 1

    def of(self, kind):
        return [c for c in self.commands if isinstance(c, kind)]


def wait_until(predicate, timeout: float = 20.0) -> None:
    # Polling a condition with a deadline (never a fixed sleep): threads here are real.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def speech() -> np.ndarray:
    audio, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 24_000
    return audio


def make_rig(device: TestDevice, config: AudioConfig):
    audio = AudioIO(config, backend=device)
    worker = FakeWorker()
    events: list[object] = []
    lock = threading.Lock()

    def on_event(event) -> None:
        with lock:
            events.append(event)

    controller = ConversationController(worker, audio, VadConfig(end_silence_s=0.5), on_event)
    controller.open()
    return controller, worker, device, events, audio


@pytest.fixture
def rig():
    controller, worker, device, events, audio = make_rig(
        TestDevice(speed=4.0), AudioConfig(echo="off", monitor_echo=False)
    )
    yield controller, worker, device, events
    controller.close()
    audio.close()


@pytest.fixture
def manual_rig():
    """The sound card runs only when the test says so (`tick`): frame counts are exact on a busy machine."""
    controller, worker, device, events, audio = make_rig(
        TestDevice(manual=True),
        # No stall detection: between ticks the device is silent on purpose.
        AudioConfig(echo="off", monitor_echo=False, stall_timeout_s=3600.0),
    )
    yield controller, worker, device, events
    controller.close()
    audio.close()


def tick(device: TestDevice, controller: ConversationController, blocks: int = 1) -> None:
    """Runs the sound card one block at a time, each only after the capture thread took the last."""
    for _ in range(blocks):
        before = controller.frames_captured
        device.advance(1)
        wait_until(lambda before=before: controller.frames_captured > before)


def tick_until(device, controller, predicate, max_blocks: int = 1000) -> None:
    for _ in range(max_blocks):
        if predicate():
            return
        tick(device, controller)
    if not predicate():
        raise AssertionError(f"condition not met within {max_blocks} audio blocks")


def states(events) -> list[str]:
    return [e.state for e in list(events) if isinstance(e, ListenState)]


def test_push_to_talk_submits_what_was_held(manual_rig):
    controller, worker, device, events = manual_rig
    controller.set_response(200, False)
    tick(device, controller, 3)  # the microphone runs; not pressed: nothing is sent
    tone = (0.3 * np.sin(np.arange(24_000 * 3) * 2 * np.pi * 220 / 24_000)).astype(np.float32)
    device.say(tone)
    controller.press()
    wait_until(lambda: controller.state == "hearing_you")
    tick(device, controller, 10)
    controller.release()
    wait_until(lambda: worker.of(Respond))
    respond = worker.of(Respond)[0]
    assert (respond.max_steps, respond.early_stop) == (200, False)
    # Exactly the ten frames heard while the button was down, and they are the tone.
    assert len(respond.audio) == 10 * FRAME
    np.testing.assert_allclose(respond.audio, tone[: 10 * FRAME], atol=1e-6)
    turn = next(e for e in events if isinstance(e, UserTurn))
    assert turn.turn_id == respond.turn_id and turn.mode == "ptt"
    assert turn.duration_s == pytest.approx(len(respond.audio) / 24_000)
    assert "hearing_you" in states(events)

    # The agent's frames are played and recorded on the left track, time-aligned with the mic.
    for _ in range(5):
        worker.audio_sink(np.full(FRAME, 0.25, np.float32))
    controller.on_worker_event(TurnFinished(respond.turn_id, "turn", "max_steps", "hi", 5, 1.0, 0.4))
    tick_until(device, controller, lambda: device.played_seconds() >= 0.39, max_blocks=50)
    tick_until(device, controller, lambda: not controller.audio.playing() and controller.state == "ready",
               max_blocks=50)
    user, agent = controller.recorded_tracks()
    assert len(user) == len(agent) and np.sum(np.isclose(agent, 0.25)) == 5 * FRAME
    # Before the press the user's track is silent: only what was sent to the model is recorded.
    assert np.max(np.abs(user[: 3 * FRAME])) == 0


def test_pressing_while_the_agent_talks_interrupts_it(manual_rig):
    controller, worker, device, events = manual_rig
    controller.press()
    wait_until(lambda: controller.state == "hearing_you")
    tick(device, controller, 2)
    controller.release()
    wait_until(lambda: worker.of(Respond))
    for _ in range(50):  # four seconds of agent audio queued
        worker.audio_sink(np.full(FRAME, 0.1, np.float32))
    tick(device, controller, 2)
    assert controller.audio.playing()
    controller.press()
    # The press cancels the turn at once; the queued audio is dropped at the sound card's next block.
    tick_until(device, controller, lambda: worker.cancels == 1 and not controller.audio.playing(), max_blocks=5)
    tick(device, controller, 2)
    controller.release()
    wait_until(lambda: len(worker.of(Respond)) == 2)
    assert worker.of(Respond)[1].turn_id > worker.of(Respond)[0].turn_id
    assert len(worker.of(Respond)[1].audio) >= FRAME
    # Of the four seconds queued, at most the blocks played before the press were heard.
    assert device.played_seconds() <= 6 * FRAME / 24_000


@pytest.mark.slow
def test_hands_free_detects_the_end_of_speech_and_ignores_the_agent(manual_rig, speech):
    controller, worker, device, events = manual_rig
    controller.set_mode("handsfree")
    controller.set_listening(True)
    wait_until(lambda: controller.state == "listening")
    device.say(np.concatenate([speech, np.zeros(24_000, np.float32)]))
    tick_until(device, controller, lambda: worker.of(Respond), max_blocks=150)
    respond = worker.of(Respond)[0]
    # The whole utterance (about 4.4 s, with pre-roll and a short tail) and not the silence after it.
    assert 3.0 < len(respond.audio) / 24_000 < 5.5
    wait_until(lambda: controller.state == "waiting")  # set right after the submit, on the capture thread
    assert states(events)[-2:] == ["hearing_you", "waiting"]

    # While the turn runs and its audio plays, the microphone (here: more speech) never starts a turn.
    worker.busy = True
    device.say(speech)
    tick_until(device, controller, lambda: device.mic_pending_seconds() == 0, max_blocks=150)
    for _ in range(10):
        worker.audio_sink(np.full(FRAME, 0.1, np.float32))
    worker.busy = False
    controller.on_worker_event(TurnFinished(respond.turn_id, "turn", "agent_finished", "ok", 10, 4.4, 0.8))
    tick_until(device, controller, lambda: controller.state == "listening", max_blocks=100)
    assert len(worker.of(Respond)) == 1

    # Listening resumed by itself: the next utterance is the next turn.
    device.say(np.concatenate([speech, np.zeros(24_000, np.float32)]))
    tick_until(device, controller, lambda: len(worker.of(Respond)) == 2, max_blocks=150)


def test_duplex_streams_frames_and_mode_switches_keep_the_conversation(rig):
    controller, worker, device, events = rig
    controller.set_mode("duplex")
    controller.set_listening(True)
    wait_until(lambda: worker.of(StartDuplex))
    wait_until(lambda: len(worker.pushed) >= 8)
    assert all(f.shape == (FRAME,) and f.dtype == np.float32 for f in worker.pushed)
    controller.set_mode("handsfree")
    wait_until(lambda: worker.of(StopDuplex))
    stopped_at = len(worker.pushed)
    wait_until(lambda: controller.frames_captured > stopped_at + 5 and controller.mode == "handsfree")
    assert len(worker.pushed) == stopped_at  # no frames after leaving duplex
    turn = next(e for e in events if isinstance(e, UserTurn))
    assert turn.mode == "duplex" and turn.duration_s >= 8 * FRAME / 24_000
    # Switching back leaves duplex stopped until the user starts it: then a new turn id; nothing
    # ever reset the conversation.
    controller.set_mode("duplex")
    wait_until(lambda: controller.mode == "duplex" and controller.state == "stopped")
    assert len(worker.of(StartDuplex)) == 1
    controller.set_listening(True)
    wait_until(lambda: len(worker.of(StartDuplex)) == 2)
    ids = [c.turn_id for c in worker.of(StartDuplex)]
    assert ids[1] > ids[0]
    assert {type(c).__name__ for c in worker.commands} == {"StartDuplex", "StopDuplex"}
    controller.set_listening(False)
    wait_until(lambda: len(worker.of(StopDuplex)) == 2 and controller.state == "stopped")


def test_test_device_plays_input_in_real_time():
    device = TestDevice(np.ones(24_000, np.float32), speed=1.0)
    audio = AudioIO(AudioConfig(echo="off", monitor_echo=False), backend=device)
    audio.start()
    try:
        t0 = time.monotonic()
        got = [audio.read_frame(timeout=5.0) for _ in range(5)]
        elapsed = time.monotonic() - t0
        audio.write_frame(np.full(FRAME, 0.5, np.float32))
        wait_until(lambda: device.played_seconds() > 0.07)
    finally:
        audio.close()
    assert all(g is not None and np.allclose(g, 1.0) for g in got)
    assert elapsed >= 0.3  # five 80 ms frames cannot arrive faster than the clock
    assert np.isclose(device.played(), 0.5).sum() == FRAME


def test_a_mode_switch_leaves_the_new_mode_stopped(manual_rig):
    # Listening hands-free, the user picks live duplex: the microphone and the agent must not
    # start by themselves (they did, and the start/stop control then read backwards).
    controller, worker, device, events = manual_rig
    controller.set_mode("handsfree")
    controller.set_listening(True)
    tick_until(device, controller, lambda: controller.state == "listening")
    controller.set_mode("duplex")
    tick_until(device, controller, lambda: controller.mode == "duplex" and controller.state == "stopped")
    tick(device, controller, 5)
    assert worker.of(StartDuplex) == [] and worker.pushed == [] and not controller.listening
    controller.set_listening(True)  # one press of start
    tick_until(device, controller, lambda: controller.state in ("listening", "hearing_you"))
    assert len(worker.of(StartDuplex)) == 1
    # Back to hands-free: stopped there too, and the live session ended.
    controller.set_mode("handsfree")
    tick_until(device, controller, lambda: controller.state == "stopped")
    assert len(worker.of(StopDuplex)) == 1 and not controller.listening


def test_a_live_session_the_worker_ended_is_over_for_the_microphone(manual_rig):
    controller, worker, device, events = manual_rig
    controller.set_mode("duplex")
    controller.set_listening(True)
    tick_until(device, controller, lambda: worker.of(StartDuplex))
    turn_id = worker.of(StartDuplex)[0].turn_id
    tick(device, controller, 3)
    # The Stop button cancels the worker's live loop; it reports the end of the session.
    controller.on_worker_event(TurnFinished(turn_id, "duplex", "cancelled", "", 3, 0.24, 0.24))
    tick_until(device, controller, lambda: controller.state == "stopped")
    pushed = len(worker.pushed)
    tick(device, controller, 5)
    assert len(worker.pushed) == pushed and not controller.listening
    assert any(isinstance(e, UserTurn) and e.turn_id == turn_id for e in events)


def test_duplex_speaking_does_not_flicker_between_words(manual_rig):
    controller, worker, device, events = manual_rig
    controller.set_mode("duplex")
    controller.set_listening(True)
    tick_until(device, controller, lambda: controller.state == "listening")
    before = len(states(events))
    # The agent's voice: 160 ms words with 160 ms pauses, played by the sound card.
    word = np.concatenate([np.full(2 * FRAME, 0.2, np.float32), np.zeros(2 * FRAME, np.float32)])
    for _ in range(6):
        for i in range(0, len(word), FRAME):
            worker.audio_sink(word[i:i + FRAME])
    tick(device, controller, 24)
    seen = states(events)[before:]
    assert seen.count("speaking") == 1, seen  # one stretch of speaking, not one per word
    tick_until(device, controller, lambda: controller.state == "listening", max_blocks=40)


def test_muted_microphone_sends_silence_and_starts_no_turn(manual_rig, speech):
    controller, worker, device, events = manual_rig
    controller.set_mode("handsfree")
    controller.set_listening(True)
    controller.set_muted(True)
    tick_until(device, controller, lambda: controller.muted)
    device.say(np.concatenate([speech, np.zeros(24_000, np.float32)]))
    tick(device, controller, int(len(speech) / FRAME) + 20)
    assert worker.of(Respond) == []
    assert [e for e in events if isinstance(e, ListenState)][-1].muted
    controller.set_muted(False)
    device.say(np.concatenate([speech, np.zeros(24_000, np.float32)]))
    tick_until(device, controller, lambda: len(worker.of(Respond)) == 1, max_blocks=200)


def test_replaying_the_users_turn_is_not_the_agent_speaking(manual_rig):
    controller, worker, device, events = manual_rig
    tick_until(device, controller, lambda: controller.state == "ready")
    controller.replay(np.full(5 * FRAME, 0.3, np.float32))
    tick_until(device, controller, lambda: controller.state == "replaying")
    tick_until(device, controller, lambda: controller.state == "ready", max_blocks=20)
    assert "speaking" not in states(events)
    assert np.isclose(device.played(), 0.3).sum() == 5 * FRAME


def test_the_recording_holds_the_turns_not_the_idle_time(manual_rig):
    controller, worker, device, events = manual_rig
    tick(device, controller, 100)  # 8 s of nobody talking
    controller.press()
    device.say(np.full(10 * FRAME, 0.25, np.float32))
    tick(device, controller, 10)
    controller.release()
    tick_until(device, controller, lambda: worker.of(Respond))
    tick(device, controller, 100)
    user, agent = controller.recorded_tracks()
    # The 10 held frames plus at most a second of idle before them; the 8 s and the tail are left out.
    assert 10 * FRAME <= len(user) <= 10 * FRAME + 24_000 + FRAME
    assert controller.recorder.left_out_seconds >= 7.0


def test_start_stop_presses_apply_in_order_however_fast(manual_rig):
    controller, worker, device, events = manual_rig
    controller.set_mode("duplex")
    controller.toggle_listening()
    controller.toggle_listening()  # pressed again before the capture thread ran once
    controller.toggle_listening()
    tick_until(device, controller, lambda: controller.state in ("listening", "hearing_you"))
    assert len(worker.of(StartDuplex)) == 2 and len(worker.of(StopDuplex)) == 1 and controller.listening


def start_semantic_turn(manual_rig, speech, tail_s: float, end_silence_s: float = 0.5):
    controller, worker, device, events = manual_rig
    controller.set_vad(VadConfig(end_silence_s=end_silence_s))
    controller.set_mode("handsfree")
    controller.set_end_of_turn("semantic")
    controller.set_listening(True)
    wait_until(lambda: controller.state == "listening")
    device.say(np.concatenate([speech, np.zeros(int(tail_s * 24_000), np.float32)]))
    tick_until(device, controller, lambda: worker.of(StartTurn), max_blocks=100)
    start = worker.of(StartTurn)[0]
    wait_until(lambda: controller.state == "hearing_you")
    return start


def score_each_block(manual_rig, turn_id: int, probability, until, max_blocks: int = 200) -> int:
    """Ticks the sound card and answers each frame with the model's end-of-turn score, as the
    worker does; returns the blocks it took."""
    controller, worker, device, _ = manual_rig
    for n in range(max_blocks):
        if until():
            return n
        tick(device, controller)
        controller.on_worker_event(EndOfTurnScore(turn_id, n, probability()))
    raise AssertionError(f"condition not met within {max_blocks} blocks")


@pytest.mark.slow
def test_semantic_end_of_turn_streams_the_turn_and_ends_it_when_the_model_says_so(manual_rig, speech):
    controller, worker, device, events = manual_rig
    tail = 2.0
    start = start_semantic_turn(manual_rig, speech, tail, end_silence_s=1.5)
    # Once speech starts the turn goes to the worker at once: what was heard (pre-roll and the
    # first 0.3 s of speech), then every frame as it comes.
    assert 0.3 <= len(start.audio) / 24_000 < 1.2 and start.max_steps == controller.max_steps
    in_speech = lambda: device.mic_pending_seconds() <= tail  # noqa: E731
    score_each_block(manual_rig, start.turn_id, lambda: 0.05, in_speech)  # "not finished" while they speak
    assert not worker.of(EndTurn) and not worker.of(Respond)
    silence_at = len(worker.turn_frames)
    blocks = score_each_block(manual_rig, start.turn_id, lambda: 0.95, lambda: worker.of(EndTurn))
    assert worker.of(EndTurn) == [EndTurn(start.turn_id, "semantic")]
    # The recording's own trailing quiet has played: after the rule's hold (2 frames) the turn ends,
    # where the silence rule would wait for 1.5 s.
    assert blocks <= 3, blocks
    assert {t for t, _ in worker.turn_frames} == {start.turn_id} and len(worker.turn_frames) >= silence_at
    turn = [e for e in events if isinstance(e, UserTurn)][-1]
    assert (turn.turn_id, turn.ended_by) == (start.turn_id, "semantic")
    heard = len(start.audio) + FRAME * len(worker.turn_frames)
    assert len(turn.audio) == heard  # the saved turn is exactly what the model heard
    # No more frames go to the turn; the agent answers, then listening resumes.
    sent = len(worker.turn_frames)
    tick(device, controller, 3)
    assert len(worker.turn_frames) == sent and not worker.of(Respond)
    controller.on_worker_event(TurnFinished(start.turn_id, "turn", "agent_finished", "ok", 10, 4.4, 0.8))
    tick_until(device, controller, lambda: controller.state == "listening", max_blocks=50)


@pytest.mark.slow
def test_without_the_speech_to_text_model_the_silence_ends_a_streamed_turn(manual_rig, speech):
    controller, worker, device, events = manual_rig
    start = start_semantic_turn(manual_rig, speech, 1.0)
    score_each_block(manual_rig, start.turn_id, lambda: float("nan"), lambda: worker.of(EndTurn))
    assert worker.of(EndTurn) == [EndTurn(start.turn_id, "silence")]
    assert [e for e in events if isinstance(e, UserTurn)][-1].ended_by == "silence"


def test_stopping_during_a_streamed_turn_cancels_it(manual_rig, speech):
    controller, worker, device, events = manual_rig
    start = start_semantic_turn(manual_rig, speech, 0.5)
    controller.set_listening(False)
    tick(device, controller)
    assert worker.cancels == 1 and not worker.of(EndTurn)
    sent = len(worker.turn_frames)
    tick(device, controller, 3)
    assert len(worker.turn_frames) == sent and controller.state == "stopped"
    # A late score of the cancelled turn changes nothing.
    controller.on_worker_event(EndOfTurnScore(start.turn_id, 99, 0.99))
    tick(device, controller)
    assert not worker.of(EndTurn)


def test_an_unknown_end_of_turn_mode_is_refused(manual_rig):
    with pytest.raises(ValueError, match="semantic"):
        manual_rig[0].set_end_of_turn("telepathy")
