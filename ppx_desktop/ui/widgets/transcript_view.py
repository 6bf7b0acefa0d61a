"""The transcript: one bubble per turn, the agent's words growing as they are generated.

The user's bubbles sit on the right, the agent's on the left, dividers (a new voice or persona)
across the middle, as chat apps lay them out. A bubble is never wider than about 66 characters
(lines of 130 characters on a wide screen are hard to read) and wraps to any narrower width, so a
small window shows every word. User bubbles show the time and duration and a button to replay
what the model heard. The view renders a `Transcript`; it keeps no conversation state of its own.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt, Signal
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
LINE_CHARS = 66  # the longest line a bubble shows
END_NOTES = {"cancelled": " (interrupted)"}


class WrapLabel(QLabel):
    """A word-wrapped plain-text label that claims the height its width needs.

    Box layouts size a wrapped label from its size hint, not from the height its actual width
    needs, so in a narrow window the last lines were cut off; and QLabel's own height-for-width
    (with selectable text) stays at the height of its narrowest layout, which left blank lines
    in a wide one. The height is measured with the font's metrics at the label's width instead.
    """

    FLAGS = Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)

    def heightForWidth(self, width: int) -> int:  # noqa: N802 (Qt override)
        m = self.contentsMargins()
        inner = max(1, width - m.left() - m.right() - 2 * self.margin())
        text = self.fontMetrics().boundingRect(QRect(0, 0, inner, 1 << 20), self.FLAGS, self.text() or " ")
        return text.height() + m.top() + m.bottom() + 2 * self.margin()

    def _claim(self) -> None:
        need = self.heightForWidth(self.width())
        if need != self.minimumHeight():
            self.setMinimumHeight(need)
            self.setMaximumHeight(need)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._claim()

    def setText(self, text: str) -> None:  # noqa: N802 (Qt override)
        super().setText(text)
        self._claim()


class EntryWidget(QFrame):
    replay_requested = Signal(int)

    def __init__(self, entry: Entry, parent=None) -> None:
        super().__init__(parent)
        self.entry = entry
        self.setObjectName(f"{entry.speaker}Entry")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        # Palette roles keep the bubbles readable in light and dark themes.
        tint = {"user": "rgba(46,134,193,0.16)", "agent": "rgba(127,140,141,0.14)"}.get(entry.speaker, "transparent")
        self.setStyleSheet(f"#{entry.speaker}Entry {{ background: {tint}; border-radius: 8px; }}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        header = QHBoxLayout()
        self.header = WrapLabel()
        self.header.setStyleSheet("font-weight: 600;")
        header.addWidget(self.header, 1)
        self.replay: QPushButton | None = None
        self._header_row = header
        layout.addLayout(header)
        self.body = WrapLabel()
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.body)
        self.refresh()

    def _ensure_replay(self) -> None:
        if self.replay is None and self.entry.speaker == "user" and self.entry.audio is not None:
            self.replay = QPushButton("▶ Replay")
            self.replay.setToolTip("Play back what the model heard")
            self.replay.setObjectName("replayButton")
            self.replay.clicked.connect(lambda: self.replay_requested.emit(self.entry.turn_id))
            self._header_row.addWidget(self.replay, 0, Qt.AlignmentFlag.AlignTop)

    def refresh(self) -> None:
        e = self.entry
        self._ensure_replay()
        if e.speaker == "note":
            self.header.setText(e.clock)
            self.body.setText(e.text)
            return
        who = "You" if e.speaker == "user" else "Agent"
        mode = MODE_NAMES.get(e.mode, e.mode)
        duration = f" · {e.duration_s:.1f} s" if e.duration_s else ""
        self.header.setText(f"{who} · {e.clock}{duration} · {mode}")
        if e.speaker == "user":  # their words when speech-to-text runs, else what kind of audio it was
            self.body.setText(e.shown_text or ("(speech)" if e.mode != "duplex" else "(live audio)"))
        else:
            self.body.setText((e.shown_text or "…") + END_NOTES.get(e.end, ""))
        self.setMaximumWidth(self.preferred_width())

    def preferred_width(self) -> int:
        """As wide as the longest line needs, at most `LINE_CHARS` characters."""
        metrics = self.body.fontMetrics()
        text_w = max(metrics.horizontalAdvance(self.body.text()), self.header.fontMetrics().horizontalAdvance(
            self.header.text()) + (self.replay.sizeHint().width() + 8 if self.replay is not None else 0))
        margins = self.layout().contentsMargins()
        limit = metrics.averageCharWidth() * LINE_CHARS
        return min(limit, text_w + 4) + margins.left() + margins.right() + 2 * self.frameWidth()


class TranscriptView(QWidget):
    replay_requested = Signal(int)

    def __init__(self, transcript: Transcript, parent=None) -> None:
        super().__init__(parent)
        self.transcript = transcript
        self._widgets: dict[int, EntryWidget] = {}  # id(entry) -> bubble
        self._rows: dict[int, QWidget] = {}  # id(entry) -> the row holding it (aligned left or right)
        self._replay_enabled = True
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # bubbles wrap instead
        self.scroll.setObjectName("transcriptScroll")
        inner = QWidget()
        self._list = QVBoxLayout(inner)
        self._list.setContentsMargins(6, 6, 6, 6)
        self._list.addStretch(1)
        self.scroll.setWidget(inner)
        outer.addWidget(self.scroll)
        self.placeholder = QLabel("Your conversation appears here.")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setEnabled(False)
        self._list.insertWidget(0, self.placeholder)
        # Follow new text while the user looks at the end; stay put while they scroll back.
        self._follow = True
        bar = self.scroll.verticalScrollBar()
        bar.rangeChanged.connect(lambda _lo, hi: self._follow and bar.setValue(hi))
        bar.valueChanged.connect(lambda value: setattr(self, "_follow", value >= bar.maximum() - 4))

    def _row_for(self, entry: Entry) -> QWidget:
        row = QWidget()
        line = QHBoxLayout(row)
        line.setContentsMargins(0, 0, 0, 0)
        bubble = EntryWidget(entry)
        bubble.replay_requested.connect(self.replay_requested)
        if bubble.replay is not None:
            bubble.replay.setEnabled(self._replay_enabled)
        if entry.speaker == "user":
            line.addStretch(1)
            line.addWidget(bubble, 100)
        elif entry.speaker == "agent":
            line.addWidget(bubble, 100)
            line.addStretch(1)
        else:
            line.addStretch(1)
            line.addWidget(bubble, 100)
            line.addStretch(1)
        self._widgets[id(entry)] = bubble
        return row

    def sync(self) -> None:
        """Puts a bubble for every entry in transcript order (new ones added, gone ones removed)."""
        self.placeholder.setVisible(not self.transcript.entries)
        alive = {id(e) for e in self.transcript.entries}
        for key in [k for k in self._rows if k not in alive]:
            row = self._rows.pop(key)
            self._widgets.pop(key, None)
            self._list.removeWidget(row)
            row.setParent(None)
            row.deleteLater()
        added = False
        for index, entry in enumerate(self.transcript.entries, start=1):  # the placeholder is row 0
            row = self._rows.get(id(entry))
            if row is None:
                row = self._rows[id(entry)] = self._row_for(entry)
                added = True
            else:
                bubble = self._widgets[id(entry)]
                bubble.refresh()
                if bubble.replay is not None:
                    bubble.replay.setEnabled(self._replay_enabled)
            if self._list.indexOf(row) != index:
                self._list.removeWidget(row)
                self._list.insertWidget(index, row)
        if added:
            self._scroll_to_end()

    def refresh_entry(self, entry: Entry | None) -> None:
        widget = self._widgets.get(id(entry)) if entry is not None else None
        if widget is None:
            self.sync()
        else:
            widget.refresh()
            self._scroll_to_end()

    def clear(self) -> None:
        self.sync()

    def entry_widgets(self) -> list[EntryWidget]:
        return [self._widgets[id(e)] for e in self.transcript.entries if id(e) in self._widgets]

    def set_replay_enabled(self, enabled: bool) -> None:
        """Replay works while the agent is quiet; the buttons say so by being greyed out."""
        self._replay_enabled = enabled
        for widget in self._widgets.values():
            if widget.replay is not None:
                widget.replay.setEnabled(enabled)
                widget.replay.setToolTip("Play back what the model heard" if enabled
                                         else "Replay works while the agent is quiet")

    def copy_to_clipboard(self) -> str:
        text = self.transcript.to_markdown()
        QGuiApplication.clipboard().setText(text)
        return text

    def _scroll_to_end(self) -> None:
        self._follow = True
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())
