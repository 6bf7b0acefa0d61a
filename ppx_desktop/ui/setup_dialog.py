"""First run: get a model. Download it (token, licence link, progress, cancel, resume), pick an
existing folder, or try the tiny demo model.

The download runs `assets.hub.download_model` on a plain thread; its progress callback emits a
Qt signal (queued to the GUI thread). Cancelling sets the hub's cancel Event; the partial files
are kept, so "Resume" continues where it stopped. Errors are shown as the hub words them.

The memory figures come from the engine's memory plan (`model_memory_gib`), never typed in; on a
machine the GPU check says cannot run the model, Download is not the default button (the demo
is) and the dialog says why.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..assets import hub
from ..engine.config import LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} GB"


def _human_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def model_memory_gib() -> dict[str, float]:
    """GPU memory the released model needs per precision, in GiB: the engine's memory plan (the
    same figures `ppx-desktop status` and the GPU check rest on), and what transcription adds."""
    from ..engine.config import ModelConfig
    from ..engine.memory import plan_memory, transcription_bytes
    from ..engine.stt_config import released_stt_config

    config = ModelConfig()
    memory = {p: plan_memory(config, p).total_gib for p in ("bfloat16", "int8", "int4")}
    memory["transcription"] = transcription_bytes(released_stt_config(), "int4") / 2**30
    return memory


def intro_text(memory: dict[str, float], gpu_mode: str | None, gpu_summary: str = "") -> str:
    text = ("<b>No PersonaPlex model was found on this computer.</b><br>"
            f"Download it (about 17 GB; the GPU needs about {memory['bfloat16']:.1f} GiB of free memory, "
            f"{memory['int8']:.1f} GiB with int8 weights or {memory['int4']:.1f} GiB with int4), use a folder that "
            "already holds it, or try the app on a tiny demo model first.")
    if gpu_mode == "demo":
        text += ("<br><br><b>This computer cannot run the real model</b>"
                 + (f": {gpu_summary}" if gpu_summary else ".")
                 + " The demo model shows how the app works; the download is still possible, for later.")
    elif gpu_mode == "turn-based":
        text += ("<br><br>This GPU has too little free memory for live conversation: the real model will run "
                 "turn-based only, slower than real time.")
    return text


def missing_model_files(folder: Path) -> list[str]:
    """The model files a chosen folder lacks (the loader reports anything subtler)."""
    names = [LM_WEIGHTS, MIMI_WEIGHTS, TEXT_TOKENIZER]
    missing = [n for n in names if not (folder / n).is_file()]
    if not (folder / "voices").is_dir():
        missing.append("voices/")
    return missing


class SetupDialog(QDialog):
    """Accepted with `choice` = "download" | "folder" | "demo" and `model_dir` set (None for demo).

    Args:
        gpu_mode: the GPU check's verdict ("bf16", "int8", "turn-based", "demo"; None: unknown).
        gpu_summary: its first line, quoted when the model cannot run here.
    """

    _progress = Signal(int, int, float, object)
    _finished = Signal(object, object)  # result, error

    def __init__(self, parent=None, repo: str = hub.DEFAULT_REPO, gpu_mode: str | None = None,
                 gpu_summary: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Set up PersonaPlex")
        self.setMinimumWidth(560)
        self.repo = repo
        self.choice: str | None = None
        self.model_dir: Path | None = None
        self._cancel: threading.Event | None = None
        self._thread: threading.Thread | None = None
        layout = QVBoxLayout(self)
        self.gpu_mode = gpu_mode
        memory = model_memory_gib()
        self.intro = intro = QLabel(intro_text(memory, gpu_mode, gpu_summary))
        intro.setObjectName("setupIntro")
        intro.setWordWrap(True)
        layout.addWidget(intro)

        box = QGroupBox("Download from Hugging Face")
        form = QVBoxLayout(box)
        licence = QLabel(f'1. Accept the licence on the <a href="{hub.model_page(repo)}">model page</a> '
                         "(sign in to Hugging Face first).<br>"
                         '2. Create a <a href="https://huggingface.co/settings/tokens">read token</a> '
                         "and paste it here:")
        licence.setOpenExternalLinks(True)
        licence.setWordWrap(True)
        licence.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        form.addWidget(licence)
        self.token = QLineEdit(hub.current_token() or "")
        self.token.setObjectName("tokenField")
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("hf_…")
        form.addWidget(self.token)
        self.transcription = QCheckBox(f"Also download speech-to-text (2 GB, {memory['transcription']:.1f} GiB of "
                                       "GPU memory or more): the transcript shows your words")
        self.transcription.setToolTip("kyutai/stt-1b-en_fr (CC-BY 4.0, not gated), run beside PersonaPlex in the "
                                      "same frame; Settings can turn it off")
        self.transcription.setObjectName("withTranscription")
        self.transcription.setChecked(True)
        form.addWidget(self.transcription)
        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        form.addWidget(self.progress)
        self.detail = QLabel("Not started")
        self.detail.setObjectName("downloadDetail")
        form.addWidget(self.detail)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        row.addStretch(1)
        form.addLayout(row)
        layout.addWidget(box)

        self.error = QLabel()
        self.error.setObjectName("setupError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b;")
        self.error.hide()
        layout.addWidget(self.error)

        other = QHBoxLayout()
        self.folder_button = QPushButton("Use a folder I already have…")
        self.demo_button = QPushButton("Try the tiny demo model")
        self.demo_button.setObjectName("demoButton")
        self.demo_button.setToolTip("A random toy model: it babbles, but shows how the app works without a GPU")
        self.quit_button = QPushButton("Quit")
        other.addWidget(self.folder_button)
        other.addWidget(self.demo_button)
        other.addStretch(1)
        other.addWidget(self.quit_button)
        layout.addLayout(other)
        # Enter does what this machine can use: the demo where the real model cannot run.
        default = self.demo_button if gpu_mode == "demo" else self.download_button
        for button in (self.download_button, self.demo_button):
            button.setAutoDefault(button is default)
        default.setDefault(True)

        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.folder_button.clicked.connect(self._pick_folder)
        self.demo_button.clicked.connect(self.choose_demo)
        self.quit_button.clicked.connect(self.reject)
        self._progress.connect(self._on_progress)
        self._finished.connect(self._on_finished)

    # --- choices ---

    def choose_demo(self) -> None:
        self.choice, self.model_dir = "demo", None
        self.accept()

    def choose_folder(self, folder: str | Path) -> bool:
        folder = Path(folder)
        missing = missing_model_files(folder)
        if missing:
            self.show_error(f"{folder} does not hold a PersonaPlex model: missing {', '.join(missing)}.")
            return False
        self.choice, self.model_dir = "folder", folder
        self.accept()
        return True

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder holding model.safetensors and voices/")
        if folder:
            self.choose_folder(folder)

    # --- download ---

    def start_download(self) -> None:
        self.error.hide()
        token = self.token.text().strip()
        self._cancel = threading.Event()
        self.download_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.detail.setText("Checking your token and access…")
        self._thread = threading.Thread(target=self._download, args=(token, self._cancel,
                                                                     self.transcription.isChecked()),
                                        daemon=True, name="ppx-download")
        self._thread.start()

    def _download(self, token: str, cancel: threading.Event, transcription: bool = False) -> None:
        from ..assets.stt_model import download_stt

        try:
            if token and token != hub.current_token():
                hub.store_token(token)
            result = hub.download_model(self.repo, token=token or None, cancel=cancel,
                                        progress=lambda d, t, s, e: self._progress.emit(d, t, s, e))
            if transcription:  # not gated: the same verified, resumable download
                download_stt(cancel=cancel, progress=lambda d, t, s, e: self._progress.emit(d, t, s, e))
        except hub.DownloadCancelled as exc:
            self._finished.emit(None, exc)
        except Exception as exc:  # HubError messages are written for the user; anything else is shown as is
            self._finished.emit(None, exc)
        else:
            self._finished.emit(result, None)

    def cancel_download(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self.detail.setText("Cancelling…")

    def _on_progress(self, done: int, total: int, speed: float, eta) -> None:
        if total > 0:
            self.progress.setValue(int(1000 * done / total))
        self.detail.setText(f"{_human_bytes(done)} of {_human_bytes(total)} · {_human_bytes(speed)}/s · "
                            f"{_human_time(eta)} left")

    def _on_finished(self, result, error) -> None:
        self.cancel_button.setEnabled(False)
        self.download_button.setEnabled(True)
        if error is None:
            self.choice, self.model_dir = "download", Path(result.model_dir)
            self.accept()
            return
        self.download_button.setText("Resume download")
        if isinstance(error, hub.DownloadCancelled):
            self.detail.setText("Cancelled. What was downloaded is kept: Resume continues from there.")
        else:
            self.detail.setText("Stopped.")
            self.show_error(str(error))

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def reject(self) -> None:
        self.cancel_download()
        super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.cancel_download()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        super().closeEvent(event)
