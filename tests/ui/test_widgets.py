"""The small widgets: what they show and what they emit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from ppx_desktop.assets.voices import list_voices
from ppx_desktop.ui.status import display_state
from ppx_desktop.ui.transcript_model import Transcript
from ppx_desktop.ui.widgets.meters import SLOW_READINGS, Meters
from ppx_desktop.ui.widgets.mode_selector import ModeSelector
from ppx_desktop.ui.widgets.response_length import ResponseLength
from ppx_desktop.ui.widgets.talk_button import TalkButton
from ppx_desktop.ui.widgets.transcript_view import TranscriptView
from ppx_desktop.ui.widgets.voice_picker import VoicePicker


@pytest.mark.parametrize("worker, listen, ready, shown", [
    pytest.param("", "", False, "no_model", id="nothing-yet"),
    pytest.param("loading", "", False, "loading", id="loading"),
    pytest.param("preparing", "ready", False, "warming_up", id="prompt-phase"),
    pytest.param("idle", "listening", True, "listening", id="hands-free-idle"),
    pytest.param("idle", "waiting", True, "thinking", id="submitted-not-started"),
    pytest.param("thinking", "waiting", True, "thinking", id="feeding-user-audio"),
    pytest.param("speaking", "waiting", True, "speaking", id="generating"),
    pytest.param("idle", "speaking", True, "speaking", id="playback-tail"),
    pytest.param("duplex", "hearing_you", True, "hearing_you", id="duplex-user-talks"),
    pytest.param("idle", "stopped", True, "stopped", id="hands-free-off"),
    pytest.param("buffering", "waiting", True, "buffering", id="slow-gpu-preparing-the-answer"),
    pytest.param("idle", "replaying", True, "replaying", id="replay-is-not-the-agent"),
    pytest.param("previewing", "ready", True, "previewing", id="voice-preview"),
])
def test_display_state(worker, listen, ready, shown):
    assert display_state(worker, listen, ready) == shown


def test_no_audio_device_is_never_ready():
    assert display_state("idle", "ready", True, audio_ok=False) == "no_audio"
    assert display_state("loading", "", False, audio_ok=False) == "loading"  # what the model does still shows


def test_talk_button_words_for_the_new_states(qtbot):
    button = TalkButton()
    qtbot.addWidget(button)
    for state, word in [("buffering", "preparing the answer"), ("no_audio", "no audio device"),
                        ("replaying", "playing back")]:
        button.set_state(state)
        assert button.word == word and word.upper() in button.text()
    assert button.focusPolicy() != Qt.FocusPolicy.NoFocus  # reachable with Tab


def test_talk_button_hold_and_toggle(qtbot):
    button = TalkButton()
    qtbot.addWidget(button)
    button.set_state("hearing_you")
    assert button.word == "hearing you" and "HEARING YOU" in button.text()
    with qtbot.waitSignal(button.pressed_to_talk), qtbot.assertNotEmitted(button.toggle_requested):
        qtbot.mousePress(button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(button.released_to_talk):
        qtbot.mouseRelease(button, Qt.MouseButton.LeftButton)
    button.set_mode("handsfree")
    with qtbot.waitSignal(button.toggle_requested), qtbot.assertNotEmitted(button.pressed_to_talk):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_response_length_in_seconds(qtbot):
    widget = ResponseLength()
    qtbot.addWidget(widget)
    assert widget.steps() == 75 and widget.seconds.text() == "6.0 s"
    with qtbot.waitSignal(widget.changed) as blocker:
        widget.spin.setValue(500)
    assert blocker.args == [500, True] and widget.seconds.text() == "40.0 s"
    assert widget.slider.value() == 500
    widget.spin.setValue(10)  # clamped to the range
    assert widget.steps() == 50
    with qtbot.waitSignal(widget.changed) as blocker:
        widget.early_stop.setChecked(False)
    assert blocker.args == [50, False]


def test_mode_selector(qtbot):
    widget = ModeSelector()
    qtbot.addWidget(widget)
    assert widget.mode() == "ptt"
    with qtbot.waitSignal(widget.mode_changed) as blocker:
        qtbot.mouseClick(widget.buttons["duplex"], Qt.MouseButton.LeftButton)
    assert blocker.args == ["duplex"] and widget.mode() == "duplex"
    assert not widget.buttons["ptt"].isChecked()
    # A model with layers in host memory cannot run live: the mode goes, saying why.
    with qtbot.waitSignal(widget.mode_changed) as blocker:
        widget.set_available("duplex", False, "too slow for real time")
    assert blocker.args == ["ptt"] and not widget.buttons["duplex"].isEnabled()
    assert "not available: too slow for real time" in widget.buttons["duplex"].toolTip()
    widget.set_available("duplex", True)
    assert widget.buttons["duplex"].isEnabled() and "Ctrl+3" in widget.buttons["duplex"].toolTip()


def test_meters_warn_only_after_sustained_slowness(qtbot):
    meters = Meters()
    qtbot.addWidget(meters)
    meters.set_levels(-30.0, float("nan"), now=0.0)
    assert meters.mic.value() == 500 and meters.out.value() == 0
    for _ in range(SLOW_READINGS - 1):
        meters.set_stats(120.0, 1.5, 3, 1000, 3000, duplex=True)
    meters.set_stats(20.0, 0.25, 0, 1010, 3000, duplex=True)  # one fast reading resets the count
    assert not meters.too_slow
    with qtbot.waitSignal(meters.too_slow_changed) as blocker:
        for _ in range(SLOW_READINGS):
            meters.set_stats(120.0, 1.5, 3, 1020, 3000, duplex=True)
    assert blocker.args == [True] and meters.too_slow and not meters.warning.isHidden()
    assert meters.context.value() == 1020 and "GPU" in meters.warning.text()
    meters.reset_speed_warning()  # the live session stopped
    assert meters.warning.isHidden()


def test_context_meter_shows_refreshes(qtbot):
    meters = Meters()
    qtbot.addWidget(meters)
    meters.set_stats(20.0, 0.25, 0, 2900, 3000, duplex=True)
    assert meters.context.text() == "2900 / 3000 frames"
    meters.set_stats(20.0, 0.25, 0, 1300, 3000, duplex=True, refreshes=2, refresh_ms=96.4)
    assert meters.context.value() == 1300 and meters.context.text() == "1300 / 3000 frames · refreshed 2× (last 96 ms)"


def test_settings_dialog_long_conversation_choice(qtbot):
    from ppx_desktop.ui.settings import AppSettings
    from ppx_desktop.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(AppSettings(context_history_s=120))
    qtbot.addWidget(dialog)
    assert dialog.context.currentData() == "120"
    dialog.context.setCurrentIndex(dialog.context.findData("scroll"))
    chosen = dialog.result_settings()
    assert chosen.context_refresh is False and chosen.context_history_s == 120  # remembered for later
    dialog.context.setCurrentIndex(dialog.context.findData("30"))
    assert (dialog.result_settings().context_refresh, dialog.result_settings().context_history_s) == (True, 30)
    dialog._restore_defaults()
    assert dialog.context.currentData() == "60"
def test_meters_say_how_late_and_how_much_is_skipped_at_every_speed(qtbot):
    meters = Meters()
    qtbot.addWidget(meters)
    # Live duplex keeping up: the readout is the queue plus one step.
    meters.set_stats(40.0, 0.5, 1, 10, 3000, duplex=True, dropped_input=0)
    meters.set_stats(40.0, 0.5, 1, 13, 3000, duplex=True, dropped_input=0)
    assert meters.stats.text() == "step 40 ms · RTF 0.50 · the agent hears you 120 ms late"
    # 1.5x too slow: the queue is full (240 ms) and the readout says how much audio is skipped,
    # which grows with the real-time factor (it stayed "lag 240 ms" whatever the speed).
    meters.set_stats(120.0, 1.5, 3, 16, 3000, duplex=True, dropped_input=2)
    assert meters.stats.text().endswith("360 ms late, skipping 40% of your audio")
    meters.set_stats(240.0, 3.0, 3, 19, 3000, duplex=True, dropped_input=8)
    assert meters.stats.text().endswith("480 ms late, skipping 67% of your audio")
    # Turn-based: how long the answer took to start.
    meters.set_stats(136.0, 1.7, 0, 400, 3000, duplex=False, wait_s=4.2)
    assert meters.stats.text() == "step 136 ms · RTF 1.70 · answer started 4.2 s after your turn"


def test_slow_warning_names_the_cpu_when_there_is_no_gpu(qtbot):
    meters = Meters()
    qtbot.addWidget(meters)
    meters.set_device("cpu")
    for _ in range(SLOW_READINGS):
        meters.set_stats(200.0, 2.5, 3, 10, 3000, duplex=True)
    assert meters.too_slow and "CPU" in meters.warning.text() and "GPU is too slow" not in meters.warning.text()


def test_level_bars_hold_their_peaks_between_syllables(qtbot):
    meters = Meters()
    qtbot.addWidget(meters)
    meters.set_levels(-60.0, -12.0, now=0.0)  # a syllable of the agent
    meters.set_levels(-60.0, -55.0, now=0.1)  # the gap after it: the bar falls slowly, not to zero
    assert meters.out.value() > 700 and meters.out.peak_value() == 800
    meters.set_levels(-60.0, -55.0, now=3.0)
    assert meters.out.value() < 200


def test_voice_picker_groups_and_availability(qtbot, tiny_model_dir):
    picker = VoicePicker()
    qtbot.addWidget(picker)
    picker.set_voices(list_voices(tiny_model_dir), "NATF2")  # NATF2 is not in the tiny model
    assert len(picker.voice_ids()) == 18
    assert picker.voice() == "NATF0"  # first available instead
    assert not picker.select("NATF2") and picker.select("VARM0")
    with qtbot.waitSignal(picker.voice_changed) as blocker:
        picker.select("NATM0")
    assert blocker.args == ["NATM0"] and "male" in picker.description.text()
    headers = [picker.combo.itemText(i) for i in range(picker.combo.count()) if not picker.combo.itemData(i, 257)]
    assert headers == ["Natural · female", "Natural · male", "Variety · female", "Variety · male"]


def test_transcript_grows_and_exports(qtbot, tmp_path):
    transcript = Transcript()
    view = TranscriptView(transcript)
    qtbot.addWidget(view)
    transcript.voice = "NATF0"
    transcript.add_user(1, np.zeros(24_000, np.float32), "ptt", started=0.0)
    view.sync()
    for piece in ["Hello", " there", "!"]:
        view.refresh_entry(transcript.add_agent_text(1, piece, "ptt"))
    widgets = view.entry_widgets()
    assert [w.entry.speaker for w in widgets] == ["user", "agent"]
    assert widgets[1].body.text() == "Hello there!" and "1.0 s" in widgets[0].header.text()
    with qtbot.waitSignal(view.replay_requested) as blocker:
        qtbot.mouseClick(widgets[0].replay, Qt.MouseButton.LeftButton)
    assert blocker.args == [1]
    transcript.finish_agent(1, "Hello there!", 2.4, "agent_finished", "ptt")
    md, js = transcript.save(tmp_path)
    assert "Hello there!" in md.read_text() and "NATF0" in md.read_text()
    data = json.loads(js.read_text())
    assert [t["speaker"] for t in data["turns"]] == ["user", "agent"]
    assert data["turns"][1]["duration_s"] == 2.4 and "audio" not in data["turns"][0]
    assert view.copy_to_clipboard().startswith("# Conversation")


def test_voice_picker_says_why_a_voice_is_greyed_out_and_what_replaced_the_choice(qtbot, tiny_model_dir):
    picker = VoicePicker()
    qtbot.addWidget(picker)
    picker.set_voices(list_voices(tiny_model_dir), "NATF2", "not among the demo model's voices")
    assert picker.why_unavailable("NATF2") == "NATF2 is not among the demo model's voices."
    assert picker.voice() == "NATF0" and not picker.notice.isHidden()
    assert picker.notice.text() == "Using NATF0: NATF2 (your choice) is not among the demo model's voices."
    picker.select("NATM0")  # the user chose for themselves: the notice has done its job
    assert picker.notice.isHidden()
    picker.set_preview_available(True)
    with qtbot.waitSignal(picker.preview_requested) as blocker:
        qtbot.mouseClick(picker.preview, Qt.MouseButton.LeftButton)
    assert blocker.args == ["NATM0"]


def test_problem_banner_keeps_each_problem_until_its_owner_clears_it(qtbot):
    from ppx_desktop.ui.widgets.problem_banner import Problem, ProblemBanner

    banner = ProblemBanner()
    qtbot.addWidget(banner)
    clicked = []
    banner.set(Problem("audio", "No microphone.", "error", [("Retry", lambda: clicked.append(1))]))
    banner.set(Problem("note", "FYI", "info", dismissable=True))
    assert banner.keys() == ["audio", "note"] and not banner.isHidden()
    banner.row("audio").buttons[0].click()
    assert clicked == [1] and banner.has("audio")  # an action does not hide what it did not fix
    banner.clear("model")  # another key: untouched
    assert banner.has("audio")
    banner.clear("audio")
    banner.clear("note")
    assert banner.isHidden()
