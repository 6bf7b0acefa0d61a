"""The big control: shows the conversation state at a glance and is the talk / start-stop button.

In push-to-talk mode it is held (mouse or space bar, the window forwards the key); in the other
modes a click toggles listening. The state word and colour come from `set_state`. It takes the
keyboard focus with Tab like any control; the space bar talks wherever the focus is, except in a
text field (ui/keyboard.py).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QPushButton, QSizePolicy

# state -> (word shown, colour); colours read on light and dark themes alike.
STATES = {
    "no_model": ("no model", "#7f8c8d"),
    "loading": ("loading", "#7f8c8d"),
    "warming_up": ("warming up", "#8e7cc3"),
    "preparing": ("warming up", "#8e7cc3"),
    "ready": ("ready", "#2e86c1"),
    "listening": ("listening", "#2e86c1"),
    "hearing_you": ("hearing you", "#27ae60"),
    "thinking": ("thinking", "#d68910"),
    "buffering": ("preparing the answer", "#d68910"),
    "speaking": ("speaking", "#c0392b"),
    "replaying": ("playing back", "#5d6d7e"),
    "previewing": ("voice preview", "#8e7cc3"),
    "stopped": ("stopped", "#7f8c8d"),
    "no_audio": ("no audio device", "#922b21"),
    "error": ("error", "#922b21"),
}
TOOLTIP = ("Push to talk: hold this button or the space bar while you speak. Hands-free and live duplex: "
           "click or press space to start and stop. The space bar works anywhere in the window except "
           "inside a text field; Enter presses the focused button.")

# What a press does, shown under the state word.
HINTS = {
    "ptt": "hold to talk (space)",
    "handsfree": "click to start / stop (space)",
    "duplex": "click to start / stop (space)",
}


class TalkButton(QPushButton):
    """Emits `pressed_to_talk`/`released_to_talk` in push-to-talk and `toggled_listening` otherwise."""

    pressed_to_talk = Signal()
    released_to_talk = Signal()
    toggle_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("talkButton")
        self.setMinimumSize(240, 96)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # Reachable with Tab; the window's key filter owns the space bar, here as everywhere.
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setToolTip(TOOLTIP)
        self._mode = "ptt"
        self._state = "no_model"
        self._muted = False
        self.pressed.connect(self._on_pressed)
        self.released.connect(self._on_released)
        self._render()

    @property
    def state(self) -> str:
        return self._state

    @property
    def word(self) -> str:
        return STATES.get(self._state, (self._state, ""))[0]

    def set_mode(self, mode: str) -> None:
        self._mode = mode
        self._render()

    def set_state(self, state: str) -> None:
        if state not in STATES:
            state = "error"
        self._state = state
        self._render()

    def set_muted(self, muted: bool) -> None:
        self._muted = muted
        self._render()

    def _on_pressed(self) -> None:
        if self._mode == "ptt":
            self.pressed_to_talk.emit()
        else:
            self.toggle_requested.emit()

    def _on_released(self) -> None:
        if self._mode == "ptt":
            self.released_to_talk.emit()

    def _render(self) -> None:
        word, colour = STATES.get(self._state, (self._state, "#7f8c8d"))
        hint = "microphone muted" if self._muted else HINTS.get(self._mode, "")
        self.setText(f"{word.upper()}\n{hint}")
        self.setAccessibleName(f"conversation state: {word}")
        self.setStyleSheet(
            f"QPushButton#talkButton {{ background: {colour}; color: white; font-size: 20px; font-weight: 600;"
            " border-radius: 14px; padding: 10px; }"
            "QPushButton#talkButton:pressed { border: 4px solid rgba(255,255,255,0.8); }"
            "QPushButton#talkButton:focus { border: 3px dashed rgba(255,255,255,0.9); }"
            "QPushButton#talkButton:disabled { background: #95a5a6; }"
        )
