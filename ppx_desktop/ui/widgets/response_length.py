"""Response length for the turn-based modes: steps (80 ms each), shown in seconds, and early stop."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QSpinBox, QWidget

from ..settings import DEFAULT_STEPS, MAX_STEPS, MIN_STEPS, step_seconds


class ResponseLength(QWidget):
    changed = Signal(int, bool)  # max_steps, early_stop

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Response length"))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(MIN_STEPS, MAX_STEPS)
        self.slider.setSingleStep(5)
        self.slider.setPageStep(25)
        self.spin = QSpinBox()
        self.spin.setRange(MIN_STEPS, MAX_STEPS)
        self.spin.setSingleStep(5)
        self.spin.setSuffix(" steps")
        self.seconds = QLabel()
        self.seconds.setMinimumWidth(48)
        self.early_stop = QCheckBox("Stop early")
        self.early_stop.setToolTip("End the answer as soon as the agent falls silent instead of using all steps")
        self.early_stop.setChecked(True)
        for widget in (self.slider, self.spin, self.seconds, self.early_stop):
            layout.addWidget(widget)
        layout.setStretch(1, 1)
        self.slider.valueChanged.connect(self.spin.setValue)
        self.spin.valueChanged.connect(self.slider.setValue)
        self.spin.valueChanged.connect(self._emit)
        self.early_stop.toggled.connect(self._emit)
        self.set_value(DEFAULT_STEPS, True)

    def steps(self) -> int:
        return self.spin.value()

    def set_value(self, steps: int, early_stop: bool) -> None:
        self.spin.setValue(steps)
        self.early_stop.setChecked(early_stop)
        self._emit()

    def _emit(self, *_) -> None:
        self.seconds.setText(f"{step_seconds(self.spin.value()):.1f} s")
        self.changed.emit(self.spin.value(), self.early_stop.isChecked())
