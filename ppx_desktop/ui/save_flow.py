"""Saving from the window: the autosave after every turn, "Save…" that starts in the
conversations folder and asks before replacing, and where the last save went (a link in the
status bar that opens the folder). The files themselves: ui/conversation_files.py."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox

from ..paths import conversations_dir
from .conversation_files import existing_files, new_autosave_folder, new_save_folder, save_conversation
from .widgets.problem_banner import Problem


class SaveFlow(QObject):
    """Args:
        window: the main window (its transcript, bridge, banner and status bar).
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.autosave_dir: Path | None = None  # this conversation's autosave folder, once it has one
        self.last_saved: Path | None = None
        self.label = QLabel()
        self.label.setObjectName("savedLocation")
        self.label.linkActivated.connect(lambda href: self.open_folder(Path(QUrl(href).toLocalFile())))

    def save_to(self, folder: Path) -> list[Path]:
        return save_conversation(folder, self.window.transcript, self.window.bridge.controller)

    def autosave(self) -> None:
        w = self.window
        if not w.transcript.entries:
            return
        if self.autosave_dir is None:
            self.autosave_dir = new_autosave_folder()
        try:
            self.save_to(self.autosave_dir)
        except OSError as exc:
            w.banner.set(Problem("autosave", f"Autosave failed: {exc}. Free some disk space, or save the "
                                             "conversation elsewhere with Save….", "warning", dismissable=True))
            return
        w.banner.clear("autosave")
        self._show_saved(self.autosave_dir, "Autosaved in")

    def new_conversation(self) -> None:
        self.autosave()
        self.autosave_dir = None

    def _show_saved(self, folder: Path, what: str) -> None:
        self.last_saved = folder
        self.label.setText(f'{what} <a href="{QUrl.fromLocalFile(str(folder)).toString()}">{folder.name}</a>')
        self.label.setToolTip(str(folder))

    def ask_save(self) -> None:
        w = self.window
        folder = QFileDialog.getExistingDirectory(w, "Save the conversation into a folder", str(conversations_dir()))
        if not folder:
            return
        folder = Path(folder)
        replaced = existing_files(folder)
        if replaced:
            answer = self._confirm_replace(folder, replaced)
            if answer == "cancel":
                return
            if answer == "new":
                folder = new_save_folder(folder)
        try:
            paths = self.save_to(folder)
        except OSError as exc:
            w.banner.set(Problem("save", f"Could not save into {folder}: {exc}", "error", dismissable=True))
            return
        w.banner.clear("save")
        self._show_saved(folder, "Saved in")
        w.statusBar().showMessage(f"Saved {', '.join(p.name for p in paths)} in {folder}", 6000)

    def _confirm_replace(self, folder: Path, names: list[str]) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, "Replace the saved conversation?",
                          f"{folder} already holds a saved conversation ({', '.join(names)}).", parent=self.window)
        box.setInformativeText("Replace it, or save into a new folder inside it?")
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        new = box.addButton("New folder", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(new)
        box.exec()
        clicked = box.clickedButton()
        return "replace" if clicked is replace else "new" if clicked is new else "cancel"

    def open_conversations_folder(self) -> None:
        folder = self.last_saved or self.autosave_dir or conversations_dir()
        self.open_folder(folder if folder.exists() else conversations_dir())

    def open_folder(self, folder: Path) -> None:
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.window.statusBar().showMessage(f"No file manager could open {folder}", 8000)
