"""Voice picker: the presets grouped (natural / variety, female / male), then custom voices.

Group headers are disabled, bold rows of the combo box, so the list reads like a menu with
sections and keyboard navigation skips them. Each voice's description is its tooltip and is
shown under the box. A voice the model folder lacks is listed but cannot be chosen.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

GROUPS = [
    ("natural", "female", "Natural · female"),
    ("natural", "male", "Natural · male"),
    ("variety", "female", "Variety · female"),
    ("variety", "male", "Variety · male"),
    ("custom", None, "Your voices"),
]
VOICE_ROLE = Qt.ItemDataRole.UserRole + 1


class VoicePicker(QWidget):
    voice_changed = Signal(str)
    add_voice_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Voice"))
        self.combo = QComboBox()
        self.combo.setObjectName("voiceCombo")
        self.combo.setMinimumContentsLength(18)
        self._model = QStandardItemModel(self)
        self.combo.setModel(self._model)
        row.addWidget(self.combo, 1)
        self.add_button = QPushButton("Add voice…")
        self.add_button.setToolTip("Make a custom voice from a recording of your own voice (with consent)")
        self.add_button.clicked.connect(self.add_voice_requested)
        row.addWidget(self.add_button)
        outer.addLayout(row)
        self.description = QLabel()
        self.description.setObjectName("voiceDescription")
        self.description.setWordWrap(True)
        self.description.setEnabled(False)  # a dimmed caption
        outer.addWidget(self.description)
        self._voices = {}
        self.combo.currentIndexChanged.connect(self._on_index)

    def set_voices(self, voices, selected: str | None = None) -> None:
        """Fills the list from `VoiceInfo`s; keeps `selected` (or the current voice) if still there."""
        keep = selected or self.voice()
        self.combo.blockSignals(True)
        self._model.clear()
        self._voices = {v.id: v for v in voices}
        bold = QFont()
        bold.setBold(True)
        for family, gender, title in GROUPS:
            members = [v for v in voices if v.family == family and (gender is None or v.gender == gender)]
            if not members:
                continue
            header = QStandardItem(title)
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            header.setFont(bold)
            self._model.appendRow(header)
            for voice in members:
                item = QStandardItem(f"   {voice.label}  ({voice.id})" if not voice.custom else f"   {voice.label}")
                item.setData(voice.id, VOICE_ROLE)
                item.setToolTip(voice.description)
                usable = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                item.setFlags(usable if voice.path is not None else Qt.ItemFlag.NoItemFlags)
                self._model.appendRow(item)
        self.combo.blockSignals(False)
        if not self.select(keep):
            first = next((v.id for v in self._ordered() if v.path is not None), None)
            if first:
                self.select(first)
        self._on_index(self.combo.currentIndex())

    def _ordered(self):
        return [self._voices[self._model.item(r).data(VOICE_ROLE)] for r in range(self._model.rowCount())
                if self._model.item(r).data(VOICE_ROLE)]

    def voice(self) -> str:
        return self.combo.currentData(VOICE_ROLE) or ""

    def voice_ids(self) -> list[str]:
        return [v.id for v in self._ordered()]

    def select(self, voice_id: str) -> bool:
        """Selects an available voice; False if it is not in the list or cannot be used."""
        for row in range(self._model.rowCount()):
            item = self._model.item(row)
            if item.data(VOICE_ROLE) == voice_id and item.isEnabled():
                self.combo.setCurrentIndex(row)
                return True
        return False

    def _on_index(self, index: int) -> None:
        voice_id = self.combo.itemData(index, VOICE_ROLE) if index >= 0 else None
        info = self._voices.get(voice_id)
        self.description.setText(info.description if info else "")
        if voice_id:
            self.voice_changed.emit(voice_id)
