"""The keyboard: a held space bar is one turn however Qt delivers X's auto-repeat, Tab reaches
every control, and the space bar talks from anywhere but a text field.

Auto-repeat is simulated as Qt delivers it from X: after the repeat delay the server sends
release/press pairs with one timestamp, every 40 ms. Qt flags a pair as auto-repeat only when
the press is already queued behind the release; on a busy machine it often is not, and the pair
comes unflagged, sometimes with the press arriving only after the window system is synced.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from ppx_desktop.ui.app import create_window
from ppx_desktop.ui.keyboard import SpaceHold


def key(kind: str, timestamp: int, auto_repeat: bool = False, k=Qt.Key.Key_Space) -> QKeyEvent:
    event = QKeyEvent(QEvent.Type.KeyPress if kind == "press" else QEvent.Type.KeyRelease, k,
                      Qt.KeyboardModifier.NoModifier, " " if k == Qt.Key.Key_Space else "", auto_repeat, 1)
    event.setTimestamp(timestamp)
    return event


def hold_events(seconds: float, flagged: bool, start: int = 1000) -> list[tuple[str, int, bool]]:
    """(kind, timestamp, auto_repeat) for one hold: press, repeat pairs from 660 ms, release."""
    events = [("press", start, False)]
    t = start + 660
    while t < start + seconds * 1000:
        events += [("release", t, flagged), ("press", t, flagged)]
        t += 40
    events.append(("release", start + int(seconds * 1000), False))
    return events


# --- the pure rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("flagged", [True, False], ids=["qt-flagged-pairs", "unflagged-pairs"])
def test_one_hold_is_one_press_and_one_release(flagged):
    hold, told = SpaceHold(), []
    for kind, ts, repeat in hold_events(3.0, flagged):
        if kind == "press":
            told += hold.press(ts, repeat)
        elif hold.release(ts, repeat):
            pass  # the window confirms later, after syncing with the window system
    assert told == ["press"] and hold.pending == 4000
    assert hold.confirm(4000) and not hold.down


def test_a_release_confirmed_late_still_waits_for_its_own_press():
    hold = SpaceHold()
    assert hold.press(0, False) == ["press"]
    assert hold.release(700, False)
    assert not hold.confirm(650)  # an older release: not this one
    assert hold.press(700, False) == []  # its press came: still held
    assert not hold.confirm(700)


def test_a_quick_second_press_is_a_second_turn():
    hold = SpaceHold(repeat_ms=40)
    hold.press(0, False)
    hold.release(500, False)
    assert hold.press(620, False) == ["release", "press"]  # 120 ms later: the user let go and pressed again


def test_timestamps_wrap_around():
    hold = SpaceHold()
    hold.press(0xFFFFFF00, False)
    hold.release(0xFFFFFFF0, False)
    assert hold.press(0x00000005, False) == []  # 21 ms later across the wrap


# --- the window, as Qt delivers the events ---------------------------------------------------


@pytest.fixture
def window(qtbot, store):
    win = create_window(store, test_input=np.zeros(0, np.float32))
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow)
    calls: list[str] = []
    win.bridge.press = lambda: calls.append("press")
    win.bridge.release = lambda: calls.append("release")
    win.calls = calls
    yield win
    win.close()


def send(widget, kind: str, ts: int, repeat: bool = False, k=Qt.Key.Key_Space) -> None:
    QApplication.sendEvent(widget, key(kind, ts, repeat, k))


@pytest.mark.parametrize("flagged", [True, False], ids=["qt-flagged-pairs", "unflagged-pairs"])
def test_holding_space_for_3_s_makes_one_turn(qtbot, window, flagged):
    target = window.talk
    events = hold_events(3.0, flagged)
    # X sends each repeat's release and press together; Qt then delivers them one event at a
    # time, with the event loop (and our timer) free to run between them.
    i = 0
    while i < len(events):
        group = events[i:i + 2] if events[i][0] == "release" and i + 1 < len(events) - 1 else events[i:i + 1]
        for kind, ts, repeat in group:
            QApplication.postEvent(target, key(kind, ts, repeat))
        QApplication.processEvents()
        i += len(group)
    qtbot.waitUntil(lambda: window.calls == ["press", "release"], timeout=10_000)
    assert window.calls == ["press", "release"]


def test_a_repeat_press_that_arrives_only_after_the_wait_still_continues_the_hold(qtbot, window):
    # The loaded case: the release is processed, the grace wait runs out, and the pair's press
    # reaches Qt only during the sync with the window system (it was sent with the release).
    late = []
    window.keyboard.sync = lambda: late and send(window.talk, *late.pop())
    send(window.talk, "press", 0)
    for t in range(660, 3000, 40):
        late.append(("press", t))
        send(window.talk, "release", t)
        qtbot.waitUntil(lambda: not late, timeout=10_000)  # the timer fired and synced
    assert window.calls == ["press"]
    send(window.talk, "release", 3000)  # the real release: nothing follows it
    qtbot.waitUntil(lambda: window.calls == ["press", "release"], timeout=10_000)


def test_focus_leaving_the_window_ends_a_hold(qtbot, window):
    send(window.talk, "press", 0)
    QApplication.sendEvent(window, QEvent(QEvent.Type.WindowDeactivate))
    assert window.calls == ["press", "release"]


def test_space_talks_from_the_voice_list_but_types_in_text_fields(qtbot, window):
    window.voices.combo.setFocus()
    qtbot.waitUntil(lambda: window.voices.combo.hasFocus())
    send(window.voices.combo, "press", 0)
    assert window.calls == ["press"] and not window.voices.combo.view().isVisible()  # the list stayed shut
    send(window.voices.combo, "release", 100)
    qtbot.waitUntil(lambda: window.calls == ["press", "release"])
    window.prompt.text.setFocus()
    qtbot.waitUntil(lambda: window.prompt.text.hasFocus())
    before = window.prompt.text.toPlainText()
    qtbot.keyClick(window.prompt.text, Qt.Key.Key_Space)
    assert window.calls == ["press", "release"] and window.prompt.text.toPlainText() != before


def test_tab_reaches_every_control_and_leaves_the_persona_text(qtbot, window):
    window.prompt.preset.setCurrentIndex(window.prompt.preset.findData("customer-service"))  # four fields
    fields = list(window.prompt._field_edits.values())
    assert len(fields) == 4
    qtbot.waitUntil(lambda: all(f.isVisible() for f in fields))  # new rows show at the next event loop pass
    window.modes.buttons["ptt"].setFocus()
    qtbot.waitUntil(lambda: window.modes.buttons["ptt"].hasFocus())
    seen = []
    for _ in range(40):
        seen.append(QApplication.focusWidget())
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    text = window.prompt.text
    assert "\t" not in text.toPlainText()  # Tab moved on from the persona text
    wanted = [*window.modes.buttons.values(), window.voices.combo, window.prompt.preset, *fields, text,
              window.length.spin, window.length.early_stop, window.talk, window.audio_controls.mute,
              window.audio_controls.volume, window.header_buttons["copy"]]
    missing = [w.objectName() or type(w).__name__ for w in wanted if w not in seen]
    assert not missing, missing
    # In reading order: modes, voice, persona fields, text, length, talk.
    order = [seen.index(w) for w in (window.modes.buttons["duplex"], window.voices.combo, window.prompt.preset,
                                     text, window.length.spin, window.talk)]
    assert order == sorted(order)


def test_enter_presses_the_focused_button(qtbot, window):
    window.modes.buttons["handsfree"].setFocus()
    qtbot.waitUntil(lambda: window.modes.buttons["handsfree"].hasFocus())
    qtbot.keyClick(window.modes.buttons["handsfree"], Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.modes.mode() == "handsfree")


def test_the_talk_button_says_where_the_space_bar_works(window):
    assert "except inside a text field" in window.talk.toolTip()
