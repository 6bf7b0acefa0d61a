"""Live meters: microphone and output levels, per-step time, real-time factor, delay, context used.

The level bars hold their peaks (audio/levels.py): an 80 ms reading swings by 30 dB between
syllables, and a bar showing each one looked dead while the agent spoke. The readout says what
the user waits for in each mode: in live duplex how far behind the agent hears and how much of
the user's audio it skips when the computer is too slow; in the turn-based modes how long an
answer took to start.

Also the one place that tells the user when the machine cannot keep up with live duplex: a few
consecutive slow readings (not a single spike) show a warning that suggests the turn-based
modes, which do not need real-time speed. It names what is slow (a GPU, or the CPU when there is
none) and goes away when the live session stops.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QRectF, QSize, Signal
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QSizePolicy, QWidget

from ...audio.levels import PeakHold

FLOOR_DB = -60.0
SLOW_READINGS = 3  # consecutive slow StepStats (about 0.75 s) before warning
FRAME_MS = 80.0


class LevelBar(QWidget):
    """A level in dB as a bar (with its held peak as a tick); `value()` is 0..1000 like a progress bar."""

    def __init__(self, name: str, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.meter = PeakHold(floor_db=FLOOR_DB)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(60)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(200, 10)

    def set_db(self, db: float, now: float) -> None:
        self.meter.update(db, now)
        self.setAccessibleDescription(f"{self.meter.level:.0f} dB")
        self.update()

    def _fraction(self, db: float) -> float:
        return (min(0.0, max(FLOOR_DB, db)) - FLOOR_DB) / -FLOOR_DB

    def value(self) -> int:
        return int(1000 * self._fraction(self.meter.level))

    def peak_value(self) -> int:
        return int(1000 * self._fraction(self.meter.peak))

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt override)
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        pal = self.palette()
        p.setPen(pal.color(QPalette.ColorRole.Mid))
        p.setBrush(pal.color(QPalette.ColorRole.Base))
        p.drawRoundedRect(r, 3, 3)
        level = self._fraction(self.meter.level)
        colour = QColor("#27ae60") if self.meter.level < -6 else QColor("#d68910")
        p.setPen(QColor(0, 0, 0, 0))
        p.setBrush(colour)
        p.drawRoundedRect(QRectF(r.left() + 1, r.top() + 1, max(0.0, (r.width() - 2) * level), r.height() - 2), 2, 2)
        if self.meter.peak > FLOOR_DB:
            x = r.left() + 1 + (r.width() - 2) * self._fraction(self.meter.peak)
            p.setBrush(pal.color(QPalette.ColorRole.Text))
            p.drawRect(QRectF(x - 1, r.top() + 1, 2, r.height() - 2))
        p.end()


class Meters(QWidget):
    too_slow_changed = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(4)
        self.mic = LevelBar("micLevel")
        self.out = LevelBar("outLevel")
        grid.addWidget(QLabel("Microphone"), 0, 0)
        grid.addWidget(self.mic, 0, 1)
        grid.addWidget(QLabel("Output"), 1, 0)
        grid.addWidget(self.out, 1, 1)
        self.context = QProgressBar()
        self.context.setObjectName("contextUsed")
        self.context.setRange(0, 3000)
        self.context.setFormat("%v / %m frames")
        self.context.setMaximumHeight(16)
        self.context.setToolTip("How much of the model's memory of this conversation is used (80 ms per frame); "
                                "when full, the oldest part is forgotten first")
        grid.addWidget(QLabel("Context"), 2, 0)
        grid.addWidget(self.context, 2, 1)
        self.stats = QLabel("step – · RTF –")
        self.stats.setObjectName("stepStats")
        self.stats.setWordWrap(True)
        self.stats.setToolTip("Step: time to compute one 80 ms frame. RTF (real-time factor): step time / 80 ms; "
                              "above 1 the model is slower than real time.")
        grid.addWidget(self.stats, 3, 0, 1, 2)
        self.warning = QLabel()
        self.warning.setObjectName("slowWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c0392b; font-weight: 600;")
        self.warning.hide()
        grid.addWidget(self.warning, 4, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        self._slow_count = 0
        self.too_slow = False
        self.device = "cuda"
        self._dropped: int | None = None
        self.set_device("cuda")

    def set_device(self, device: str) -> None:
        """What runs the model ("cuda", "cuda:0", "cpu"): the slowness warning names it."""
        self.device = device
        if device.startswith("cpu"):
            text = ("The model runs on the CPU here (no GPU), which is too slow for live duplex: the agent falls "
                    "behind. Use Push to talk or Hands-free turns, which work at any speed.")
        else:
            text = ("This GPU is too slow for live duplex: the agent falls behind. "
                    "Use Push to talk or Hands-free turns, which work at any speed.")
        self.warning.setText(text)

    def set_levels(self, mic_db: float, out_db: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.mic.set_db(mic_db, now)
        self.out.set_db(out_db, now)

    def set_stats(self, step_ms: float, rtf: float, lag_frames: int, context_used: int, context_size: int,
                  duplex: bool, dropped_input: int = 0, wait_s: float = 0.0, refreshes: int = 0,
                  refresh_ms: float = 0.0) -> None:
        head = f"step {step_ms:.0f} ms · RTF {rtf:.2f}"
        if duplex:
            skipped = 0.0
            if self._dropped is not None and rtf > 0:
                # Between two readings the worker ran 3 frames; the queue dropped the rest of what came in.
                new = max(0, dropped_input - self._dropped)
                skipped = new / (new + 3)
            self._dropped = dropped_input
            behind = lag_frames * FRAME_MS + step_ms
            text = f"{head} · the agent hears you {behind:.0f} ms late"
            if skipped > 0.01:
                text += f", skipping {skipped:.0%} of your audio"
        else:
            self._dropped = None
            text = head + (f" · answer started {wait_s:.1f} s after your turn" if wait_s > 0 else "")
        self.stats.setText(text)
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
        self._dropped = None
        self._set_too_slow(False)

    def _set_too_slow(self, slow: bool) -> None:
        if slow != self.too_slow:
            self.too_slow = slow
            self.warning.setVisible(slow)
            self.too_slow_changed.emit(slow)
