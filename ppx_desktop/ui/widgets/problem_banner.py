"""Problems the user can act on, shown at the top of the window until they are resolved.

Each problem has a key ("audio", "device_lost", "echo", "model", ...): the part of the app that
found it sets it, and only the part that sees it resolved clears it (opening the devices clears
"audio"; loading a model does not). A problem says what to do, and can carry buttons that do it
("Retry", "Open settings"). Passing notices the user only needs to read can be dismissed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

# severity -> (background, text colour); readable on light and dark themes.
COLOURS = {
    "error": ("#f5b7b1", "#641e16"),
    "warning": ("#fae5b0", "#5e4300"),
    "info": ("#d6eaf8", "#1b4f72"),
}


@dataclass
class Problem:
    key: str
    message: str
    severity: str = "error"  # "error" | "warning" | "info"
    actions: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    dismissable: bool = False


class _Row(QFrame):
    def __init__(self, problem: Problem, dismiss: Callable[[str], None]) -> None:
        super().__init__()
        self.problem = problem
        self.setObjectName(f"problem_{problem.key}")
        bg, fg = COLOURS.get(problem.severity, COLOURS["error"])
        self.setStyleSheet(f"#problem_{problem.key} {{ background: {bg}; border-radius: 6px; }}"
                           f"#problem_{problem.key} QLabel {{ color: {fg}; }}")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        self.label = QLabel(problem.message)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.buttons: list[QPushButton] = []
        for text, slot in problem.actions:
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
            self.buttons.append(button)
        if problem.dismissable:
            close = QToolButton()
            close.setText("✕")
            close.setToolTip("Dismiss")
            close.setAccessibleName("Dismiss this message")
            close.clicked.connect(lambda: dismiss(problem.key))
            row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)


class ProblemBanner(QWidget):
    """Args: none. `set` / `clear` by key; `changed` fires whenever the list changes."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("problemBanner")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._rows: dict[str, _Row] = {}
        self.hide()

    def set(self, problem: Problem) -> None:
        """Shows `problem`, replacing one with the same key."""
        old = self._rows.get(problem.key)
        if old is not None and old.problem == problem:
            return
        row = _Row(problem, self.clear)
        if old is not None:
            self._layout.replaceWidget(old, row)
            old.deleteLater()
        else:
            self._layout.addWidget(row)
        self._rows[problem.key] = row
        self.setVisible(True)
        self.changed.emit()

    def clear(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is None:
            return
        self._layout.removeWidget(row)
        row.hide()
        row.deleteLater()
        self.setVisible(bool(self._rows))
        self.changed.emit()

    def has(self, key: str) -> bool:
        return key in self._rows

    def keys(self) -> list[str]:
        return list(self._rows)

    def message(self, key: str) -> str:
        row = self._rows.get(key)
        return row.problem.message if row is not None else ""

    def row(self, key: str) -> _Row | None:
        return self._rows.get(key)

    def text(self) -> str:
        """Every message shown, one per line (for tests and the accessibility tree)."""
        return "\n".join(r.problem.message for r in self._rows.values())
