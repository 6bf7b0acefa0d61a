"""The row under the talk control: stop the agent, mute the microphone, output volume.

What users of voice apps reach for without thinking: a Stop that works while the agent is in
the middle of a sentence (Esc too), a mute that the model honours (it hears silence), and a
volume that acts at once, queued speech included.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget


class AudioControls(QWidget):
    stop_requested = Signal()
    mute_changed = Signal(bool)
    volume_changed = Signal(float)  # 0..1

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.stop = QPushButton("■ Stop agent")
        self.stop.setObjectName("stopAgent")
        self.stop.setToolTip("Stop the agent now: its answer and what is still queued to play (Esc)")
        self.stop.clicked.connect(self.stop_requested)
        row.addWidget(self.stop)
        self.mute = QPushButton("Mute mic")
        self.mute.setObjectName("muteMic")
        self.mute.setCheckable(True)
        self.mute.setToolTip("The model hears silence while the microphone is muted (Ctrl+M)")
        self.mute.toggled.connect(self._on_mute)
        row.addWidget(self.mute)
        row.addSpacing(8)
        self.volume_label = QLabel("Volume")
        row.addWidget(self.volume_label)
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setObjectName("outputVolume")
        self.volume.setRange(0, 100)
        self.volume.setValue(100)
        self.volume.setMinimumWidth(60)
        self.volume.setToolTip("Output volume of the agent's voice")
        self.volume.setAccessibleName("Output volume")
        self.volume.valueChanged.connect(lambda v: self.volume_changed.emit(v / 100.0))
        row.addWidget(self.volume, 1)
        self.set_agent_active(False)

    def _on_mute(self, on: bool) -> None:
        self.mute.setText("Unmute mic" if on else "Mute mic")
        self.mute.setStyleSheet("QPushButton#muteMic { background: #c0392b; color: white; }" if on else "")
        self.mute_changed.emit(on)

    def set_agent_active(self, active: bool) -> None:
        """Stop is offered while there is something to stop."""
        self.stop.setEnabled(active)

    def set_volume(self, volume: float) -> None:
        self.volume.setValue(round(100 * min(1.0, max(0.0, volume))))

    def muted(self) -> bool:
        return self.mute.isChecked()
