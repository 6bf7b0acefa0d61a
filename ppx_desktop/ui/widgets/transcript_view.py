"""The transcript: one bubble per turn, the agent's words growing as they are generated.

User bubbles show the time and duration and a button to replay what the model heard. The view
renders a `Transcript` (ui/transcript_model.py); it keeps no conversation state of its own.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..transcript_model import Entry, Transcript

MODE_NAMES = {"ptt": "push to talk", "handsfree": "hands-free", "duplex": "live duplex"}


class EntryWidget(QFrame):
    replay_requested = Signal(int)

    def __init__(self, entry: Entry, parent=None) -> None:
        super().__init__(parent)
        self.entry = entry
        self.setObjectName(f"{entry.speaker}Entry")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        # Palette roles keep the bubbles readable in light and dark themes.
        tint = "rgba(46,134,193,0.16)" if entry.speaker == "user" else "rgba(127,140,141,0.14)"
        self.setStyleSheet(f"#{entry.speaker}Entry {{ background: {tint}; border-radius: 8px; }}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        header = QHBoxLayout()
        self.header = QLabel()
        self.header.setStyleSheet("font-weight: 600;")
        header.addWidget(self.header)
        header.addStretch(1)
        self.replay = None
        if entry.speaker == "user" and entry.audio is not None:
            self.replay = QPushButton("▶ Replay")
            self.replay.setToolTip("Play back what the model heard")
            self.replay.setObjectName("replayButton")
            self.replay.clicked.connect(lambda: self.replay_requested.emit(entry.turn_id))
            header.addWidget(self.replay)
        layout.addLayout(header)
        self.body = QLabel()
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.body)
        self.refresh()

    def refresh(self) -> None:
        e = self.entry
        who = "You" if e.speaker == "user" else "Agent"
        mode = MODE_NAMES.get(e.mode, e.mode)
        duration = f" · {e.duration_s:.1f} s" if e.duration_s else ""
        self.header.setText(f"{who} · {e.clock}{duration} · {mode}")
        if e.speaker == "user":
            self.body.setText("(speech)" if e.mode != "duplex" else "(live audio)")
        else:
            self.body.setText(e.text.strip() or "…")


class TranscriptView(QWidget):
    replay_requested = Signal(int)

    def __init__(self, transcript: Transcript, parent=None) -> None:
        super().__init__(parent)
        self.transcript = transcript
        self._widgets: dict[int, EntryWidget] = {}  # id(entry) -> widget
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setObjectName("transcriptScroll")
        inner = QWidget()
        self._list = QVBoxLayout(inner)
        self._list.setContentsMargins(6, 6, 6, 6)
        self._list.addStretch(1)
        self.scroll.setWidget(inner)
        outer.addWidget(self.scroll)
        self.placeholder = QLabel("Your conversation appears here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setEnabled(False)
        self._list.insertWidget(0, self.placeholder)

    def sync(self) -> None:
        """Adds widgets for new entries and refreshes changed ones (cheap: only the last few change)."""
        self.placeholder.setVisible(not self.transcript.entries)
        for entry in self.transcript.entries:
            widget = self._widgets.get(id(entry))
            if widget is None:
                widget = EntryWidget(entry)
                widget.replay_requested.connect(self.replay_requested)
                self._widgets[id(entry)] = widget
                self._list.insertWidget(self._list.count() - 1, widget)
                self._scroll_to_end()
            else:
                widget.refresh()

    def refresh_entry(self, entry: Entry) -> None:
        widget = self._widgets.get(id(entry))
        if widget is None:
            self.sync()
        else:
            widget.refresh()
            self._scroll_to_end()

    def clear(self) -> None:
        for widget in self._widgets.values():
            widget.setParent(None)
            widget.deleteLater()
        self._widgets.clear()
        self.sync()

    def entry_widgets(self) -> list[EntryWidget]:
        return [self._widgets[id(e)] for e in self.transcript.entries if id(e) in self._widgets]

    def copy_to_clipboard(self) -> str:
        text = self.transcript.to_markdown()
        QGuiApplication.clipboard().setText(text)
        return text

    def _scroll_to_end(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())
