"""Three exclusive mode buttons: push to talk, hands-free turns, live duplex.

Exclusive by hand, not through an exclusive QButtonGroup: in one of those only the checked
button takes the Tab focus, so the other modes could not be reached from the keyboard.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QWidget

MODE_LABELS = {
    "ptt": ("Push to talk", "Ctrl+1", "Hold the button or the space bar while you speak"),
    "handsfree": ("Hands-free turns", "Ctrl+2", "Speak, pause; the agent answers, then listens again by itself"),
    "duplex": ("Live duplex", "Ctrl+3", "Continuous, interruptible conversation (needs a fast GPU)"),
}


class ModeSelector(QWidget):
    mode_changed = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.buttons: dict[str, QPushButton] = {}
        for mode, (label, shortcut, tip) in MODE_LABELS.items():
            button = QPushButton(label)
            button.setCheckable(True)
            button.setShortcut(shortcut)
            button.setToolTip(f"{tip} ({shortcut})")
            button.setObjectName(f"mode_{mode}")
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            layout.addWidget(button)
            self.buttons[mode] = button
            button.clicked.connect(lambda _checked=False, m=mode: self.set_mode(m))
        self._mode = "ptt"
        self.buttons["ptt"].setChecked(True)

    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Selects `mode` (emits mode_changed when it changes)."""
        for m, button in self.buttons.items():
            button.setChecked(m == mode)
        if mode != self._mode:
            self._mode = mode
            self.mode_changed.emit(mode)

    def set_available(self, mode: str, available: bool, why: str = "") -> None:
        """Enables or disables a mode, saying why in its tooltip; a disabled current mode falls back
        to push to talk."""
        button = self.buttons[mode]
        label, shortcut, tip = MODE_LABELS[mode]
        button.setEnabled(available)
        button.setToolTip(f"{tip} ({shortcut})" if available else f"{label} is not available: {why}")
        if not available and button.isChecked():
            self.set_mode("ptt")
