"""Persona prompt editor: a preset (with its fields), the rendered text to edit, saved prompts.

Choosing a preset shows a form for its `{field}`s and renders the template into the text box;
editing a field re-renders it. The text box is what the conversation uses, so it can also be
typed freely. "Save…" stores the text as a user prompt, which then appears among the presets.
The field values are part of what the window remembers, so after a restart the fields show what
the text was made from (not the preset's defaults). Tab moves on from the text box (it does not
type a tab character: a persona has no use for one).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class PromptEditor(QWidget):
    prompt_changed = Signal(str)
    save_requested = Signal(str, str)  # name, text

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Persona"))
        self.preset = QComboBox()
        self.preset.setObjectName("promptPreset")
        row.addWidget(self.preset, 1)
        self.save_button = QPushButton("Save…")
        self.save_button.setToolTip("Keep this persona among your prompts")
        self.save_button.clicked.connect(self._ask_save)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        self.fields_form = QFormLayout()
        self.fields_form.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.fields_form)
        self.text = QPlainTextEdit()
        self.text.setObjectName("promptText")
        self.text.setPlaceholderText("Describe who the agent is, e.g. “You enjoy having a good conversation.”")
        self.text.setMaximumHeight(90)
        self.text.setTabChangesFocus(True)
        layout.addWidget(self.text)
        self._presets = {}
        self._field_edits: dict[str, QLineEdit] = {}
        self.preset.currentIndexChanged.connect(self._on_preset)
        self.text.textChanged.connect(lambda: self.prompt_changed.emit(self.prompt()))

    def set_presets(self, presets, selected: str | None = None, text: str | None = None,
                    fields: dict[str, str] | None = None) -> None:
        """Fills the preset list from `PromptPreset`s; restores `selected`, its saved `fields` and
        a saved `text` (which may have been edited by hand after the fields were filled)."""
        self.preset.blockSignals(True)
        self.preset.clear()
        self._presets = {p.id: p for p in presets}
        for p in presets:
            self.preset.addItem(p.title, p.id)
            self.preset.setItemData(self.preset.count() - 1, p.description or p.template,
                                    Qt.ItemDataRole.ToolTipRole)
        self.preset.blockSignals(False)
        index = self.preset.findData(selected) if selected else -1
        self.preset.setCurrentIndex(max(0, index))
        self._on_preset(self.preset.currentIndex())
        for name, value in (fields or {}).items():
            edit = self._field_edits.get(name)
            if edit is not None and isinstance(value, str):
                edit.blockSignals(True)
                edit.setText(value)
                edit.blockSignals(False)
        if fields:
            self._render()
        if text:
            self.text.setPlainText(text)

    def preset_id(self) -> str:
        return self.preset.currentData() or ""

    def prompt(self) -> str:
        return self.text.toPlainText().strip()

    def field_values(self) -> dict[str, str]:
        return {name: edit.text() for name, edit in self._field_edits.items()}

    def set_field(self, name: str, value: str) -> None:
        self._field_edits[name].setText(value)

    def _on_preset(self, index: int) -> None:
        while self.fields_form.rowCount():
            self.fields_form.removeRow(0)
        self._field_edits = {}
        preset = self._presets.get(self.preset.itemData(index))
        if preset is None:
            return
        previous = self.save_button
        for spec in preset.fields:
            edit = QLineEdit(spec.default)
            edit.setObjectName(f"field_{spec.name}")
            edit.textChanged.connect(self._render)
            self.fields_form.addRow(spec.label, edit)
            self._field_edits[spec.name] = edit
            QWidget.setTabOrder(previous, edit)  # created last, but read between the preset and the text
            previous = edit
        QWidget.setTabOrder(previous, self.text)
        self._render()

    def _render(self) -> None:
        preset = self._presets.get(self.preset_id())
        if preset is not None:
            self.text.setPlainText(preset.render(self.field_values()))

    def _ask_save(self) -> None:
        name, ok = QInputDialog.getText(self, "Save persona", "Name for this persona:")
        if ok and name.strip():
            self.save_requested.emit(name.strip(), self.prompt())
