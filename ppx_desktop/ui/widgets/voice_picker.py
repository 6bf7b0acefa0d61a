"""Voice picker: the presets grouped (natural / variety, female / male), then custom voices.

Group headers are disabled, bold rows of the combo box, so the list reads like a menu with
sections and keyboard navigation skips them. Each voice's description is its tooltip and is
shown under the box. A voice the model folder lacks is listed greyed out, saying why; when the
voice the user had chosen is one of them, the caption says which one is used instead. "Preview"
asks for a few seconds of the agent speaking in the selected voice.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

GROUPS = [
    ("natural", "female", "Natural · female"),
    ("natural", "male", "Natural · male"),
    ("variety", "female", "Variety · female"),
    ("variety", "male", "Variety · male"),
    ("custom", None, "Your voices"),
]
VOICE_ROLE = Qt.ItemDataRole.UserRole + 1
DEFAULT_MISSING = "not in this model's voices/ folder"


class VoicePicker(QWidget):
    voice_changed = Signal(str)
    add_voice_requested = Signal()
    preview_requested = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        label = QLabel("&Voice")
        row.addWidget(label)
        self.combo = QComboBox()
        self.combo.setObjectName("voiceCombo")
        self.combo.setMinimumContentsLength(12)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        label.setBuddy(self.combo)
        self._model = QStandardItemModel(self)
        self.combo.setModel(self._model)
        row.addWidget(self.combo, 1)
        self.preview = QToolButton()  # a compact symbol: a narrow window keeps the voice names readable
        self.preview.setText("▶")
        self.preview.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.preview.setObjectName("previewVoice")
        self.preview.setAccessibleName("Preview this voice")
        self.preview.clicked.connect(lambda: self.voice() and self.preview_requested.emit(self.voice()))
        row.addWidget(self.preview)
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
        self.notice = QLabel()
        self.notice.setObjectName("voiceNotice")
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #9a6700;")
        self.notice.hide()
        outer.addWidget(self.notice)
        self._voices = {}
        self.replaced: tuple[str, str] | None = None  # (the voice asked for, the one used instead)
        self.combo.currentIndexChanged.connect(self._on_index)
        self.set_preview_available(False, "Load a model first")

    def set_voices(self, voices, selected: str | None = None, missing_reason: str = DEFAULT_MISSING) -> None:
        """Fills the list from `VoiceInfo`s; keeps `selected` (or the current voice) if still there.

        Args:
            missing_reason: why a listed voice cannot be used (shown greyed out, and as its tooltip).
        """
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
                text = f"   {voice.label}  ({voice.id})" if not voice.custom else f"   {voice.label}"
                item = QStandardItem(text if voice.path is not None else f"{text} — unavailable")
                item.setData(voice.id, VOICE_ROLE)
                item.setToolTip(voice.description if voice.path is not None
                                else f"{voice.id} is {missing_reason}.")
                usable = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
                item.setFlags(usable if voice.path is not None else Qt.ItemFlag.NoItemFlags)
                self._model.appendRow(item)
        self.combo.blockSignals(False)
        self.replaced = None
        if not self.select(keep):
            first = next((v.id for v in self._ordered() if v.path is not None), None)
            if first:
                self.select(first)
                if keep and keep in self._voices:
                    self.replaced = (keep, first)
        self._show_notice(missing_reason)
        self._on_index(self.combo.currentIndex())

    def _show_notice(self, missing_reason: str) -> None:
        if self.replaced is None:
            self.notice.hide()
            return
        wanted, used = self.replaced
        self.notice.setText(f"Using {used}: {wanted} (your choice) is {missing_reason}.")
        self.notice.show()

    def _ordered(self):
        return [self._voices[self._model.item(r).data(VOICE_ROLE)] for r in range(self._model.rowCount())
                if self._model.item(r).data(VOICE_ROLE)]

    def voice(self) -> str:
        return self.combo.currentData(VOICE_ROLE) or ""

    def voice_ids(self) -> list[str]:
        return [v.id for v in self._ordered()]

    def why_unavailable(self, voice_id: str) -> str:
        """The tooltip of a greyed-out voice ("" for a usable one or an unknown id)."""
        for row in range(self._model.rowCount()):
            item = self._model.item(row)
            if item.data(VOICE_ROLE) == voice_id and not item.isEnabled():
                return item.toolTip()
        return ""

    def select(self, voice_id: str) -> bool:
        """Selects an available voice; False if it is not in the list or cannot be used."""
        for row in range(self._model.rowCount()):
            item = self._model.item(row)
            if item.data(VOICE_ROLE) == voice_id and item.isEnabled():
                self.combo.setCurrentIndex(row)
                return True
        return False

    def set_preview_available(self, available: bool, why: str = "") -> None:
        self.preview.setEnabled(available)
        self.preview.setToolTip("Preview: hear a few seconds of the agent in this voice" if available
                                else f"Preview: {why}")

    def _on_index(self, index: int) -> None:
        voice_id = self.combo.itemData(index, VOICE_ROLE) if index >= 0 else None
        info = self._voices.get(voice_id)
        self.description.setText(info.description if info else "")
        if self.replaced is not None and voice_id != self.replaced[1]:
            self.replaced = None  # the user chose for themselves
            self.notice.hide()
        if voice_id:
            self.voice_changed.emit(voice_id)
