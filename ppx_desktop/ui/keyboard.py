"""The keyboard in the main window: the space bar talks from anywhere except a text field, and
Enter presses the focused button (the space bar no longer can).

Holding a key makes the X server send auto-repeat *release/press pairs* carrying the same server
timestamp. Qt flags them as auto-repeat only when it finds the press already queued behind the
release; on a busy machine it often has not arrived yet, and the pair looks like a real release
and a new press (one 3 s hold gave 25 turns). So a release only ends the hold once no press
follows it: `SpaceHold` keeps it pending, and `KeyboardControl` confirms it after a short wait
and a round trip to the window system (`QGuiApplication.sync`), which delivers every event the
server sent before, so a repeat's press, sent together with its release, has always arrived by
then. The verdict rests on server timestamps and event order, never on how fast this process
runs.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

TIMESTAMP_MASK = 0xFFFFFFFF  # X server times are 32-bit milliseconds and wrap after 49 days
DEFAULT_REPEAT_MS = 40  # X's default rate (25 per second); a repeat pair shares one timestamp anyway
CONFIRM_WAIT_MS = 120  # how long a release waits for its press before the round trip confirms it


class SpaceHold:
    """One hold of the space bar from the events Qt delivers (no Qt: the verdict is pure).

    Args:
        repeat_ms: a press this soon (server time) after a release continues the hold.
    """

    def __init__(self, repeat_ms: int = DEFAULT_REPEAT_MS) -> None:
        self.repeat_ms = repeat_ms
        self.down = False  # what the app was told
        self.pending: int | None = None  # timestamp of a release not yet confirmed

    def press(self, timestamp: int, auto_repeat: bool) -> list[str]:
        """What to tell the app for a key press: [], ["press"] or ["release", "press"]."""
        if self.pending is not None:
            gap = (timestamp - self.pending) & TIMESTAMP_MASK
            self.pending = None
            if auto_repeat or gap <= self.repeat_ms:
                return []  # the second half of an auto-repeat pair: still held
            return ["release", "press"]  # the release was real, and this is a new hold
        if self.down or auto_repeat:
            return []  # a flagged repeat, or a repeat of a hold that started outside the window
        self.down = True
        return ["press"]

    def release(self, timestamp: int, auto_repeat: bool) -> bool:
        """True when the release must be confirmed later (`confirm`); flagged repeats are ignored."""
        if auto_repeat or not self.down:
            return False
        self.pending = timestamp
        return True

    def confirm(self, timestamp: int) -> bool:
        """Ends the hold if the release at `timestamp` is still pending (no press came after it)."""
        if self.pending is None or self.pending != timestamp:
            return False
        self.pending = None
        self.down = False
        return True

    def cancel(self) -> bool:
        """The window lost the keyboard: a hold ends now (its release will never reach us)."""
        was_down = self.down
        self.down, self.pending = False, None
        return was_down


def is_text_field(widget: QWidget | None) -> bool:
    """Widgets where the space bar types: text boxes, spin boxes and editable combo boxes."""
    if isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit, QAbstractSpinBox)):
        return True
    return isinstance(widget, QComboBox) and widget.isEditable()


class KeyboardControl(QObject):
    """Application-wide key filter for one window.

    Args:
        window: keys count only while this window is active.
        talk: called with True when the space bar goes down, False when it is released.
    """

    def __init__(self, window: QWidget, talk: Callable[[bool], None]) -> None:
        super().__init__(window)
        self.window = window
        self.talk = talk
        rate = QGuiApplication.styleHints().keyboardAutoRepeatRateF()
        self.hold = SpaceHold(max(DEFAULT_REPEAT_MS, int(1000 / rate)) if rate > 0 else DEFAULT_REPEAT_MS)
        # Delivers every event the window system sent before this call; replaceable in tests.
        self.sync: Callable[[], None] = QGuiApplication.sync
        self._timer = QTimer(self, singleShot=True, interval=CONFIRM_WAIT_MS, timeout=self._confirm)
        self._confirming = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        kind = event.type()
        if kind == QEvent.Type.WindowDeactivate and watched is self.window:
            if self.hold.cancel():
                self.talk(False)
            return False
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or not self.window.isActiveWindow():
            return False
        key = event.key()
        focus = QApplication.focusWidget()
        if key == Qt.Key.Key_Space and event.modifiers() in (Qt.KeyboardModifier.NoModifier,
                                                            Qt.KeyboardModifier.KeypadModifier):
            if is_text_field(focus) or QApplication.activePopupWidget() is not None:
                return False
            if kind == QEvent.Type.KeyPress:
                for what in self.hold.press(event.timestamp(), event.isAutoRepeat()):
                    self.talk(what == "press")
            elif self.hold.release(event.timestamp(), event.isAutoRepeat()):
                self._timer.start()
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and kind == QEvent.Type.KeyPress \
                and isinstance(focus, QAbstractButton) and focus.window() is self.window:
            if not event.isAutoRepeat() and focus.isEnabled():
                focus.animateClick()
            return True
        return False

    def _confirm(self) -> None:
        if self._confirming:  # re-entered from inside sync(): the outer call finishes the job
            return
        pending = self.hold.pending
        if pending is None:
            return
        self._confirming = True
        try:
            self.sync()
        finally:
            self._confirming = False
        if self.hold.confirm(pending):
            self.talk(False)
        elif self.hold.pending is not None:
            self._timer.start()  # a newer release arrived meanwhile: give it its own wait
