"""Add a custom voice from a 10-30 s recording, with the speaker's consent confirmed.

Only collects the name, the recording and the consent; making the voice (a voice-prompt run on
the loaded model) is the worker's job, started by the window.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..assets.voices import VOICE_NAME


class CustomVoiceDialog(QDialog):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add a voice")
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        intro = QLabel("Choose a recording of 10 to 30 seconds of one person speaking naturally, without music "
                       "or other voices. The agent will then speak with a voice like it.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("voiceName")
        self.name.setPlaceholderText("letters, digits, - or _")
        form.addRow("Name", self.name)
        row = QHBoxLayout()
        self.path = QLineEdit()
        self.path.setObjectName("voiceFile")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("Recording", row)
        layout.addLayout(form)
        self.consent = QCheckBox("The speaker agreed to having their voice used this way")
        self.consent.setObjectName("consent")
        layout.addWidget(self.consent)
        note = QLabel("Voices made from other people's recordings need their consent. "
                      "Custom voices are marked as yours in the voice list.")
        note.setWordWrap(True)
        note.setEnabled(False)
        layout.addWidget(note)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Make voice")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        for signal in (self.name.textChanged, self.path.textChanged, self.consent.toggled):
            signal.connect(self._validate)
        self._validate()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Recording", "", "Audio (*.wav *.flac *.ogg *.mp3)")
        if path:
            self.path.setText(path)
            if not self.name.text():
                self.name.setText(Path(path).stem[:40])

    def _validate(self) -> None:
        ok = (bool(VOICE_NAME.fullmatch(self.name.text())) and Path(self.path.text()).is_file()
              and self.consent.isChecked())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def values(self) -> tuple[str, Path, bool]:
        return self.name.text(), Path(self.path.text()), self.consent.isChecked()
