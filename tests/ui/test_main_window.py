"""The real window on a tiny model and the test audio device, driven as a user would."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from ppx_desktop.session import events as ev
from ppx_desktop.session.controller import UserTurn
from ppx_desktop.ui.app import choose_model, create_window, first_run_gpu_message
from ppx_desktop.ui.setup_dialog import SetupDialog
from ppx_desktop.ui.transcript_model import spoken

SPEECH = Path(__file__).resolve().parents[1] / "audio" / "data" / "near_speech.wav"
LOAD_S = 240  # a tiny model loads in seconds, but CI machines here run many suites at once


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(24_000 * seconds)) / 24_000
    return (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


@pytest.fixture
def window(qtbot, store, tiny_model_dir):
    win = create_window(store, test_input=np.zeros(0, np.float32), speed=2.0)
    qtbot.addWidget(win)
    win.show()
    win.load_model(tiny_model_dir)
    qtbot.waitUntil(lambda: win.model_ready, timeout=LOAD_S * 1000)
    yield win
    win.close()


def device(win):
    return win.bridge.audio.backend


def finished(win, timeout_s: float = 120):
    """Waits for the next TurnFinished and returns it."""
    return lambda qtbot: qtbot.waitSignal(win.bridge.event, timeout=int(timeout_s * 1000),
                                          check_params_cb=lambda e: isinstance(e, ev.TurnFinished))


@pytest.mark.slow
def test_push_to_talk_turn_voice_steps_and_save(qtbot, window, tmp_path):
    # The voice picker changes the conversation's voice.
    with qtbot.waitSignal(window.bridge.event, timeout=LOAD_S * 1000,
                          check_params_cb=lambda e: isinstance(e, ev.ConversationReady)) as ready:
        assert window.voices.select("VARM0")
    assert ready.args[0].voice == "VARM0" and window.transcript.voice == "VARM0"
    qtbot.waitUntil(lambda: window.model_ready, timeout=30_000)
    # The steps selector sets how long the answer is (early stop off: exactly that many steps).
    window.length.set_value(60, False)
    # The capture thread reports "ready" at its next 50 ms poll after the worker became idle.
    qtbot.waitUntil(lambda: window.talk.word == "ready", timeout=10_000)

    device(window).say(tone(2.0))
    window.space(True)  # hold the space bar
    qtbot.waitUntil(lambda: window.talk.word == "hearing you", timeout=10_000)
    start = window.bridge.controller.frames_captured
    qtbot.waitUntil(lambda: window.bridge.controller.frames_captured >= start + 8, timeout=20_000)
    with qtbot.waitSignal(window.bridge.event, timeout=180_000,
                          check_params_cb=lambda e: isinstance(e, ev.TurnFinished)) as done:
        window.space(False)
    turn = done.args[0]
    assert turn.steps == 60 and turn.end == "max_steps"
    user, agent = [e for e in window.transcript.entries if e.speaker == "user"], \
        [e for e in window.transcript.entries if e.speaker == "agent"]
    assert len(user) == 1 and user[0].duration_s >= 8 * 0.08 and user[0].audio is not None
    assert len(agent) == 1 and agent[0].shown_text == spoken(turn.text).strip() and turn.text.strip()
    widgets = window.transcript_view.entry_widgets()
    assert widgets[-1].body.text() == spoken(turn.text).strip()  # control pieces and double spaces go
    qtbot.waitUntil(lambda: device(window).played_seconds() > 1.0, timeout=30_000)  # the answer was played

    paths = window.save_to(tmp_path / "saved")
    assert sorted(p.name for p in paths) == ["conversation.wav", "transcript.json", "transcript.md"]
    with wave.open(str(tmp_path / "saved" / "conversation.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 24_000) and w.getnframes() > 24_000
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert np.abs(pcm[:, 0]).max() > 0 and np.abs(pcm[:, 1]).max() > 0  # agent left, user right
    assert spoken(turn.text).strip() in (tmp_path / "saved" / "transcript.md").read_text()


@pytest.mark.slow
def test_hands_free_hears_the_end_of_speech(qtbot, window):
    speech, _ = sf.read(SPEECH, dtype="float32")
    window.modes.set_mode("handsfree")
    window.length.set_value(50, True)
    window.toggle_listening()
    qtbot.waitUntil(lambda: window.talk.word == "listening", timeout=20_000)
    with qtbot.waitSignal(window.bridge.event, timeout=240_000,
                          check_params_cb=lambda e: isinstance(e, ev.TurnFinished)):
        device(window).say(np.concatenate([speech, np.zeros(24_000, np.float32)]))
    user = [e for e in window.transcript.entries if e.speaker == "user"]
    assert len(user) == 1 and user[0].mode == "handsfree" and 3.0 < user[0].duration_s < 5.5
    # After the answer has played, it listens again by itself.
    qtbot.waitUntil(lambda: window.talk.word == "listening", timeout=60_000)


@pytest.mark.slow
def test_live_duplex_runs_stops_and_closing_stops_at_once(qtbot, window):
    window.modes.set_mode("duplex")
    assert not window.length.isEnabled()
    device(window).say(tone(1.0))
    window.toggle_listening()
    qtbot.waitUntil(lambda: window.worker_state == "duplex", timeout=20_000)
    qtbot.waitUntil(lambda: device(window).played() is not None and window.bridge.controller.frames_captured > 10,
                    timeout=20_000)
    with qtbot.waitSignal(window.bridge.event, timeout=30_000,
                          check_params_cb=lambda e: isinstance(e, ev.TurnFinished)) as done:
        window.toggle_listening()
    assert done.args[0].mode == "duplex" and done.args[0].end == "stopped" and done.args[0].steps > 0
    qtbot.waitUntil(lambda: window.talk.word == "stopped", timeout=10_000)
    # Both sides of the live session, the user's first (it was listed after the agent's).
    assert [e.speaker for e in window.transcript.entries if e.mode == "duplex"] == ["user", "agent"]

    # Switching modes keeps the conversation: no Reset, the transcript stays.
    window.modes.set_mode("ptt")
    assert window.transcript.entries
    # Closing during live generation stops the inference thread at once: counted in steps (the
    # one-second budget is wall-clock, logged by the bridge, and would be flaky on a loaded CI machine).
    window.modes.set_mode("duplex")
    window.toggle_listening()
    qtbot.waitUntil(lambda: window.worker_state == "duplex", timeout=20_000)
    worker = window.bridge.worker
    closing, after_close = threading.Event(), []
    sink = worker.audio_sink

    def counting_sink(pcm):
        if closing.is_set():
            after_close.append(pcm)
        sink(pcm)

    worker.audio_sink = counting_sink
    closing.set()
    window.close()
    assert not window.isVisible()
    assert worker.wait(timeout=60.0)
    assert len(after_close) <= 1  # only the step already running when the window closed
    assert list(window.autosave_dir.glob("transcript.json"))  # what was said is saved


def test_settings_persist_across_restart(qtbot, tmp_path):
    path = str(tmp_path / "persist.ini")
    first = create_window(QSettings(path, QSettings.Format.IniFormat), test_input=np.zeros(0, np.float32))
    qtbot.addWidget(first)
    first.modes.set_mode("handsfree")
    first.length.set_value(240, False)
    first.prompt.preset.setCurrentIndex(first.prompt.preset.findData("casual"))
    first.close()
    second = create_window(QSettings(path, QSettings.Format.IniFormat), test_input=np.zeros(0, np.float32))
    qtbot.addWidget(second)
    assert second.modes.mode() == "handsfree" and second.talk.word in ("no model",)
    assert (second.length.steps(), second.length.early_stop.isChecked()) == (240, False)
    assert second.prompt.preset_id() == "casual" and second.prompt.prompt() == "You enjoy having a good conversation."
    second.close()


def test_first_run_dialog_appears_without_a_model(qtbot, store):
    win = create_window(store, test_input=np.zeros(0, np.float32))
    qtbot.addWidget(win)
    seen = {}

    def answer() -> None:
        dialog = next((w for w in QApplication.topLevelWidgets() if isinstance(w, SetupDialog) and w.isVisible()),
                      None)
        if dialog is None:
            QTimer.singleShot(50, answer)
            return
        seen["title"] = dialog.windowTitle()
        dialog.choose_folder(Path(store.fileName()).parent)  # not a model folder: refused with a message
        seen["error"] = dialog.error.text()
        dialog.demo_button.click()

    QTimer.singleShot(0, answer)
    assert choose_model(win, demo=False, model_dir=None) == (None, True)
    assert seen["title"] == "Set up PersonaPlex" and "does not hold a PersonaPlex model" in seen["error"]
    win.close()


def test_first_start_says_what_this_gpu_runs(qtbot):
    import torch

    box = first_run_gpu_message()
    assert box is not None
    qtbot.addWidget(box)
    if not torch.cuda.is_available():  # the test machines: only the demo model runs, said as a warning
        assert box.icon() == QMessageBox.Icon.Warning
        assert box.text() == "No NVIDIA GPU visible: only the demo model will run."
    assert box.informativeText() and "gpu-check.json" in box.detailedText()
    assert first_run_gpu_message() is None  # once


@pytest.fixture
def custom_voice(tiny_model_dir, tmp_path):
    """A custom voice made before the window opens, as `voices add` or Add voice… would."""
    from ppx_desktop.assets.voices import create_custom_voice
    from ppx_desktop.engine.model import load_model
    from ppx_desktop.engine.tiny import synthetic_voice

    wav = tmp_path / "me.wav"
    sf.write(str(wav), np.tile(synthetic_voice(1, seconds=2.0), 6), 24000, subtype="PCM_16")
    create_custom_voice(load_model(tiny_model_dir, device="cpu"), "Mine", wav, consent=True)
    return "Mine"


def test_a_custom_voice_is_listed_and_talks_like_a_preset(qtbot, custom_voice, window):
    assert custom_voice in window.voices.voice_ids()
    for voice in ("NATM0", custom_voice):  # from a preset to the custom voice
        with qtbot.waitSignal(window.bridge.event, timeout=LOAD_S * 1000,
                              check_params_cb=lambda e: isinstance(e, (ev.ConversationReady, ev.ErrorEvent))) as ready:
            assert window.voices.select(voice)
        assert isinstance(ready.args[0], ev.ConversationReady) and ready.args[0].voice == voice
        qtbot.waitUntil(lambda: window.model_ready, timeout=30_000)
    assert not window.banner.isVisible() and window.transcript.voice == custom_voice



@pytest.mark.slow
def test_the_users_words_appear_during_the_turn_and_are_saved(qtbot, window, tmp_path):
    """Speech into the test microphone, push-to-talk: the speech-to-text model (the tiny model's
    stt/, random weights: random words) writes the user's line while the turn runs, then a final
    one; the bubble shows it and the saved transcript keeps it."""
    assert window.bridge.worker.transcriber is not None  # on by default where the model is there
    speech, _ = sf.read(SPEECH, dtype="float32")
    seen: list = []
    window.bridge.event.connect(lambda e: seen.append(e) if isinstance(e, (ev.UserText, ev.TurnFinished)) else None)
    window.length.set_value(50, False)
    qtbot.waitUntil(lambda: window.talk.word == "ready", timeout=10_000)
    device(window).say(speech[:24_000 * 2])
    window.space(True)
    start = window.bridge.controller.frames_captured
    qtbot.waitUntil(lambda: window.bridge.controller.frames_captured >= start + 20, timeout=20_000)
    window.space(False)
    qtbot.waitUntil(lambda: any(isinstance(e, ev.TurnFinished) for e in seen), timeout=180_000)
    lines = [e for e in seen if isinstance(e, ev.UserText)]
    done = next(i for i, e in enumerate(seen) if isinstance(e, ev.TurnFinished))
    assert any(not e.final for e in seen[:done] if isinstance(e, ev.UserText))  # grew during the turn
    assert lines and lines[-1].final and lines[-1].text
    user = next(e for e in window.transcript.entries if e.speaker == "user")
    assert user.shown_text == lines[-1].text and user.said_at is not None
    bubble = next(w for w in window.transcript_view.entry_widgets() if w.entry is user)
    assert bubble.body.text() == lines[-1].text
    window.save_to(tmp_path / "saved")
    import json

    saved = json.loads((tmp_path / "saved" / "transcript.json").read_text())
    said = [t for t in saved["turns"] if t["speaker"] == "user"]
    assert said[0]["text"] == lines[-1].text and "words_s" in said[0]
    assert lines[-1].text in (tmp_path / "saved" / "transcript.md").read_text()


@pytest.mark.slow
def test_hands_free_semantic_turns_stream_the_users_words_and_are_answered(qtbot, window):
    """Hands-free with "when you finish your sentence": the turn goes to the model while the user
    speaks (their words grow in the window before the turn ends), every frame is scored, the turn
    ends by the model's score and the agent answers. The tiny model's scores are random, so the
    rule is made easy to meet (any score over 0.01 with 0.16 s of silence): the plumbing is tested."""
    from ppx_desktop.session.semantic_turn import SemanticTurnRule

    speech, _ = sf.read(SPEECH, dtype="float32")
    seen: list = []
    window.bridge.event.connect(lambda e: seen.append(e) if isinstance(
        e, (ev.UserText, ev.EndOfTurnScore, ev.TurnFinished, UserTurn)) else None)
    from ppx_desktop.audio.vad import VadConfig

    # The silence fallback is set far out (5 s), so a worker slowed down by a busy machine (its
    # scores arriving late) still sees the turn end by the score, not by the silence.
    window.bridge.controller.set_vad(VadConfig(end_silence_s=5.0))
    window.bridge.controller.set_end_of_turn("semantic", SemanticTurnRule(threshold=0.01, hold_frames=1))
    window.length.set_value(20, False)
    window.modes.set_mode("handsfree")
    window.toggle_listening()
    qtbot.waitUntil(lambda: window.talk.word == "listening", timeout=20_000)
    device(window).say(np.concatenate([speech, np.zeros(24_000 * 2, np.float32)]))
    qtbot.waitUntil(lambda: any(isinstance(e, ev.TurnFinished) for e in seen), timeout=180_000)
    ended = next(i for i, e in enumerate(seen) if isinstance(e, UserTurn))
    assert seen[ended].ended_by == "semantic"
    before_end = seen[:ended]
    assert sum(isinstance(e, ev.EndOfTurnScore) for e in before_end) >= 10  # scored while the user spoke
    assert any(isinstance(e, ev.UserText) and not e.final for e in before_end)  # words grew during the turn
    done = next(e for e in seen if isinstance(e, ev.TurnFinished))
    assert done.end != "cancelled" and done.steps > 0 and done.user_audio_s > 1.0
    user = next(e for e in window.transcript.entries if e.speaker == "user")
    assert user.shown_text and not window.banner.has("error")
