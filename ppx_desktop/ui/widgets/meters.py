"""Live meters: microphone and output levels, per-step time, real-time factor, lag, context used.

Also the one place that tells the user when the GPU cannot keep up with live duplex: a few
consecutive slow readings (not a single spike) show a warning that suggests the turn-based
modes, which do not need real-time speed.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QWidget

FLOOR_DB = -60.0
SLOW_READINGS = 3  # consecutive slow StepStats (about 0.75 s) before warning


def _level_bar(name: str) -> QProgressBar:
    bar = QProgressBar()
    bar.setObjectName(name)
    bar.setRange(0, 1000)
    bar.setTextVisible(False)
    bar.setMaximumHeight(10)
    return bar


class Meters(QWidget):
    too_slow_changed = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(4)
        self.mic = _level_bar("micLevel")
        self.out = _level_bar("outLevel")
        grid.addWidget(QLabel("Microphone"), 0, 0)
        grid.addWidget(self.mic, 0, 1)
        grid.addWidget(QLabel("Output"), 1, 0)
        grid.addWidget(self.out, 1, 1)
        self.context = QProgressBar()
        self.context.setObjectName("contextUsed")
        self.context.setRange(0, 3000)
        self.context.setFormat("%v / %m frames")
        self.context.setMaximumHeight(16)
        grid.addWidget(QLabel("Context"), 2, 0)
        grid.addWidget(self.context, 2, 1)
        self.stats = QLabel("step – · RTF – · lag –")
        self.stats.setObjectName("stepStats")
        grid.addWidget(self.stats, 3, 0, 1, 2)
        self.warning = QLabel(
            "This GPU is too slow for live duplex: the agent falls behind. "
            "Use Push to talk or Hands-free turns, which work at any speed."
        )
        self.warning.setObjectName("slowWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c0392b; font-weight: 600;")
        self.warning.hide()
        grid.addWidget(self.warning, 4, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        self._slow_count = 0
        self.too_slow = False

    def set_levels(self, mic_db: float, out_db: float) -> None:
        for bar, db in ((self.mic, mic_db), (self.out, out_db)):
            clamped = min(0.0, max(FLOOR_DB, db if db == db else FLOOR_DB))  # NaN -> floor
            bar.setValue(int(1000 * (clamped - FLOOR_DB) / -FLOOR_DB))

    def set_stats(self, step_ms: float, rtf: float, lag_frames: int, context_used: int, context_size: int,
                  duplex: bool, refreshes: int = 0, refresh_ms: float = 0.0) -> None:
        self.stats.setText(f"step {step_ms:.0f} ms · RTF {rtf:.2f} · lag {lag_frames * 80} ms")
        self.context.setRange(0, max(1, context_size))
        self.context.setValue(min(context_used, context_size))
        # A refresh rebuilt the context as the prompt plus the recent conversation (session/context.py).
        self.context.setFormat("%v / %m frames" + (f" · refreshed {refreshes}× (last {refresh_ms:.0f} ms)"
                                                   if refreshes else ""))
        # RTF is compute time over audio time: above 1 the agent cannot keep up in real time.
        if duplex and rtf > 1.0:
            self._slow_count += 1
        else:
            self._slow_count = 0
        if self._slow_count >= SLOW_READINGS and not self.too_slow:
            self._set_too_slow(True)

    def reset_speed_warning(self) -> None:
        self._slow_count = 0
        self._set_too_slow(False)

    def _set_too_slow(self, slow: bool) -> None:
        if slow != self.too_slow:
            self.too_slow = slow
            self.warning.setVisible(slow)
            self.too_slow_changed.emit(slow)
