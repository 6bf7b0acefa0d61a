"""The main window: mode, voice, persona, response length, the big talk control, meters, transcript.

It only composes widgets and forwards their signals to the `EngineBridge`; everything the model
does arrives back as events on `bridge.event` (queued to this thread) and is rendered here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ..assets.prompts import list_prompts, save_user_prompt
from ..assets.voices import list_voices
from ..engine.config import FRAME_RATE
from ..engine.sampling import SamplingConfig
from ..session import events as ev
from ..session.context import ContextSettings
from ..session.controller import ControllerError, ListenState, UserTurn
from .conversation_files import new_autosave_folder, save_conversation
from .engine_bridge import EngineBridge, VoiceCreated
from .settings import AppSettings, load_settings, save_settings
from .status import display_state
from .transcript_model import Transcript
from .widgets.meters import Meters
from .widgets.mode_selector import ModeSelector
from .widgets.prompt_editor import PromptEditor
from .widgets.response_length import ResponseLength
from .widgets.talk_button import TalkButton
from .widgets.transcript_view import TranscriptView
from .widgets.voice_picker import VoicePicker

log = logging.getLogger(__name__)
TEXT_INPUTS = (QLineEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox)


class MainWindow(QMainWindow):
    """Args:
        bridge: the engine bridge (owns the worker, the controller and the audio).
        store: where settings live (a throwaway one in tests).
    """

    def __init__(self, bridge: EngineBridge, store: QSettings | None = None, audio_factory=None) -> None:
        super().__init__()
        self.setWindowTitle("PersonaPlex")
        self.bridge = bridge
        self.store = store if store is not None else QSettings()
        self.settings: AppSettings = load_settings(self.store)
        self.transcript = Transcript()
        self.model_dir: Path | None = None
        self.model_ready = False
        self.worker_state = ""
        self.listen_state = ""
        self.autosave_dir: Path | None = None
        self._space_down = False
        self.listening_on = False  # what the user asked for; the controller applies it asynchronously
        self._build()
        self._restore()
        bridge.event.connect(self._on_event)
        self._levels = QTimer(self, interval=100, timeout=self._poll_levels)
        self._levels.start()
        self._autosave_timer = QTimer(self, singleShot=True, interval=1500, timeout=self.autosave)
        QApplication.instance().installEventFilter(self)

    # --- layout ---

    def _build(self) -> None:
        bar = QToolBar("Conversation")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.modes = ModeSelector()
        bar.addWidget(self.modes)
        bar.addSeparator()
        self.actions: dict[str, QAction] = {}
        for name, text, keys, slot in [
            ("new", "New conversation", QKeySequence.StandardKey.New, self.new_conversation),
            ("save", "Save…", QKeySequence.StandardKey.Save, self._ask_save),
            ("copy", "Copy transcript", "Ctrl+Shift+C", lambda: self.transcript_view.copy_to_clipboard()),
            ("stop", "Stop agent", "Esc", self.bridge.interrupt),
            ("settings", "Settings…", QKeySequence.StandardKey.Preferences, self.open_settings),
            ("quit", "Quit", QKeySequence.StandardKey.Quit, self.close),
        ]:
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setToolTip(f"{text} ({QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)})")
            action.triggered.connect(slot)
            self.actions[name] = action
            if name not in ("quit", "stop", "copy"):
                bar.addAction(action)
            else:
                self.addAction(action)
        if not self.actions["settings"].shortcut().toString():
            self.actions["settings"].setShortcut(QKeySequence("Ctrl+,"))

        left = QWidget()
        col = QVBoxLayout(left)
        self.banner = QLabel()
        self.banner.setObjectName("errorBanner")
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #f5b7b1; color: #641e16; padding: 6px; border-radius: 6px;")
        self.banner.hide()
        col.addWidget(self.banner)
        self.voices = VoicePicker()
        col.addWidget(self.voices)
        self.prompt = PromptEditor()
        col.addWidget(self.prompt)
        self.apply_prompt = QPushButton("Use this persona")
        self.apply_prompt.setToolTip("Start a new conversation with this voice and persona")
        self.apply_prompt.setEnabled(False)
        col.addWidget(self.apply_prompt, 0, Qt.AlignmentFlag.AlignRight)
        self.length = ResponseLength()
        col.addWidget(self.length)
        self.talk = TalkButton()
        col.addWidget(self.talk)
        self.meters = Meters()
        col.addWidget(self.meters)
        col.addStretch(1)

        right = QWidget()
        rcol = QVBoxLayout(right)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Transcript</b>"))
        head.addStretch(1)
        for name in ("copy", "save"):
            button = QPushButton(self.actions[name].text())
            button.clicked.connect(self.actions[name].trigger)
            head.addWidget(button)
        rcol.addLayout(head)
        self.transcript_view = TranscriptView(self.transcript)
        rcol.addWidget(self.transcript_view)

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([440, 520])
        self.setCentralWidget(split)
        self.statusBar().showMessage("Starting…")
        self.resize(1000, 680)

        self.modes.mode_changed.connect(self.set_mode)
        self.voices.voice_changed.connect(self._voice_changed)
        self.voices.add_voice_requested.connect(self._add_voice)
        self.prompt.prompt_changed.connect(lambda _t: self.apply_prompt.setEnabled(self.model_ready))
        self.prompt.save_requested.connect(self._save_prompt)
        self.apply_prompt.clicked.connect(self.start_conversation)
        self.length.changed.connect(self._length_changed)
        self.talk.pressed_to_talk.connect(self.bridge.press)
        self.talk.released_to_talk.connect(self.bridge.release)
        self.talk.toggle_requested.connect(self.toggle_listening)
        self.transcript_view.replay_requested.connect(self._replay)

    def _restore(self) -> None:
        s = self.settings
        if s.geometry:
            self.restoreGeometry(s.geometry)
        self.prompt.set_presets(list_prompts(), s.prompt_preset, s.prompt_text or None)
        self.voices.set_voices(list_voices(None), s.voice)
        self.length.set_value(s.max_steps, s.early_stop)
        self.modes.set_mode(s.mode)
        self.set_mode(s.mode)
        self._render_state()

    # --- commands ---

    def load_model(self, model_dir: Path | None, demo: bool = False) -> None:
        s = self.settings
        self.model_ready = False
        self.bridge.start()
        self.bridge.load_model(model_dir=model_dir, demo=demo, device=None if s.device == "auto" else s.device,
                               dtype=None if s.dtype == "auto" else s.dtype,
                               quant=None if s.quant == "none" else s.quant,
                               offload_layers=None if s.offload == "auto" else 0, context=s.context_frames or None)

    def start_conversation(self) -> None:
        s = self.settings
        sampling = SamplingConfig(temp_text=s.temp_text, top_k_text=s.top_k_text, temp_audio=s.temp_audio,
                                  top_k_audio=s.top_k_audio)
        voice, prompt = self.voices.voice(), self.prompt.prompt()
        self.transcript.voice, self.transcript.prompt = voice, prompt
        self.model_ready = False
        self.apply_prompt.setEnabled(False)
        context = ContextSettings(refresh=s.context_refresh, history_frames=round(s.context_history_s * FRAME_RATE))
        self.bridge.start_conversation(voice, prompt, sampling, None if s.seed < 0 else s.seed, context)
        self._render_state()

    def set_mode(self, mode: str) -> None:
        self.settings.mode = mode
        self.talk.set_mode(mode)
        self.length.setEnabled(mode != "duplex")
        self.bridge.set_mode(mode)
        if mode == "ptt":
            self.listening_on = False  # the controller drops listening in push to talk, too
        if mode != "duplex":
            self.meters.reset_speed_warning()

    def toggle_listening(self) -> None:
        if self.settings.mode != "ptt" and self.model_ready:
            self.listening_on = not self.listening_on
            self.bridge.set_listening(self.listening_on)

    def new_conversation(self) -> None:
        self.autosave()
        self.transcript.clear()
        self.transcript_view.clear()
        self.autosave_dir = None
        self.bridge.controller.clear_recording()
        self.bridge.new_conversation()

    def save_to(self, folder: Path) -> list[Path]:
        return save_conversation(folder, self.transcript, self.bridge.controller)

    def autosave(self) -> None:
        if not self.transcript.entries:
            return
        if self.autosave_dir is None:
            self.autosave_dir = new_autosave_folder()
        try:
            self.save_to(self.autosave_dir)
        except OSError as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}")

    def _ask_save(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the conversation into a folder")
        if folder:
            paths = self.save_to(Path(folder))
            self.statusBar().showMessage(f"Saved {', '.join(p.name for p in paths)} in {folder}", 6000)

    def open_settings(self) -> None:
        from ..audio import list_devices
        from .settings_dialog import SettingsDialog

        try:
            devices = list_devices()
        except Exception as exc:  # no audio subsystem: still let the user edit the rest
            log.warning("cannot list audio devices: %s", exc)
            devices = []
        dialog = SettingsDialog(self.settings, devices, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: AppSettings) -> None:
        from ..audio.vad import VadConfig

        self.settings = new
        self.bridge.set_vad(VadConfig(end_silence_s=new.vad_end_silence_s, threshold=new.vad_threshold))
        save_settings(self.settings, self.store)

    def _voice_changed(self, voice: str) -> None:
        self.settings.voice = voice
        if self.model_ready or self.worker_state in ("idle", "ready"):
            self.start_conversation()

    def _length_changed(self, steps: int, early_stop: bool) -> None:
        self.settings.max_steps, self.settings.early_stop = steps, early_stop
        self.bridge.set_response(steps, early_stop)

    def _save_prompt(self, name: str, text: str) -> None:
        try:
            save_user_prompt(name, text)
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self.prompt.set_presets(list_prompts(), self.prompt.preset_id(), text)

    def _add_voice(self) -> None:
        from .custom_voice_dialog import CustomVoiceDialog

        dialog = CustomVoiceDialog(self)
        if dialog.exec():
            name, path, consent = dialog.values()
            self.bridge.create_voice(name, path, consent)
            self.statusBar().showMessage(f"Making voice {name}…")

    def _replay(self, turn_id: int) -> None:
        entry = self.transcript.user_entry(turn_id)
        if entry is not None and entry.audio is not None:
            self.bridge.play(entry.audio)

    def show_error(self, message: str) -> None:
        self.banner.setText(message)
        self.banner.setVisible(bool(message))

    # --- events from the worker and the controller ---

    def _on_event(self, event) -> None:
        if isinstance(event, ev.Status):
            self.worker_state = event.state
            if event.detail:
                self.statusBar().showMessage(event.detail)
        elif isinstance(event, ev.Progress):
            what = {"load": "Loading the model", "prompt": "Preparing voice and persona"}.get(event.task, event.task)
            self.statusBar().showMessage(f"{what}… {100 * event.done // max(1, event.total)} %")
        elif isinstance(event, ev.ModelLoaded):
            self.model_dir = Path(event.model_dir)
            streamed = event.offloaded_layers
            weights = event.dtype + ("" if event.quant == "none" else f", {event.quant} weights")
            self.statusBar().showMessage(f"Model {self.model_dir.name} on {event.device} ({weights})"
                                         + (" — tiny demo model" if event.demo else "")
                                         + (f", {streamed} layers in host memory: turn-based modes only"
                                            if streamed else ""))
            self.voices.set_voices(list_voices(self.model_dir), self.settings.voice)
            self.modes.set_available("duplex", not streamed,
                                     f"{streamed} of the model's layers stream from host memory every frame "
                                     "(GPU too small), too slow for real time")
            self.show_error("")
            self.start_conversation()
        elif isinstance(event, ev.ConversationReady):
            self.model_ready = True
            self.statusBar().showMessage(f"Ready: {event.voice} ({event.seconds:.1f} s"
                                         + (", from cache)" if event.from_cache else ")")
                                         + "".join(f"; {note}" for note in event.notes), 8000)
        elif isinstance(event, ev.TurnStarted):
            if event.mode == "duplex":
                self.transcript.agent(event.turn_id, "duplex")
                self.transcript_view.sync()
        elif isinstance(event, ev.AgentText):
            entry = self.transcript.add_agent_text(event.turn_id, event.text, self.settings.mode)
            self.transcript_view.refresh_entry(entry)
        elif isinstance(event, ev.TurnFinished):
            entry = self.transcript.finish_agent(event.turn_id, event.text, event.agent_audio_s, event.end,
                                                 self.settings.mode)
            self.transcript_view.refresh_entry(entry)
            self._autosave_timer.start()
        elif isinstance(event, ev.StepStats):
            self.meters.set_stats(event.step_ms, event.rtf, event.lag_frames, event.context_used,
                                  event.context_size, self.settings.mode == "duplex", event.refreshes,
                                  event.refresh_ms)
        elif isinstance(event, ev.ContextRefreshed):
            log.info("context refreshed (%s): %d -> %d frames, kept %d, %.0f ms", event.reason, event.frames_before,
                     event.frames_after, event.kept_frames, event.stall_ms)
            kept_s = event.kept_frames / FRAME_RATE
            self.statusBar().showMessage(f"Context refreshed: the persona and the last {kept_s:.0f} s of conversation "
                                         f"kept ({event.stall_ms:.0f} ms)", 8000)
        elif isinstance(event, ev.ErrorEvent):
            self.show_error(event.message)
        elif isinstance(event, UserTurn):
            self.transcript.add_user(event.turn_id, event.audio, event.mode, event.started, event.duration_s)
            self.transcript_view.sync()
            self._autosave_timer.start()
        elif isinstance(event, ListenState):
            self.listen_state = event.state
        elif isinstance(event, ControllerError):
            self.show_error(event.message)
        elif isinstance(event, VoiceCreated):
            self.voices.set_voices(list_voices(self.model_dir), event.name)
            self.statusBar().showMessage(f"Voice {event.name} is ready" + "".join(f"; {n}" for n in event.notes), 8000)
        self._render_state()

    def _render_state(self) -> None:
        self.talk.set_state(display_state(self.worker_state, self.listen_state, self.model_ready))

    def _poll_levels(self) -> None:
        stats = self.bridge.audio.stats
        self.meters.set_levels(stats.input_level_db, stats.output_level_db)

    # --- keyboard: the space bar talks, unless a text field has the focus ---

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and event.key() == Qt.Key.Key_Space \
                and self.isActiveWindow() and not isinstance(QApplication.focusWidget(), TEXT_INPUTS):
            if event.isAutoRepeat():
                return True
            self.space(event.type() == QEvent.Type.KeyPress)
            return True
        return super().eventFilter(watched, event)

    def space(self, down: bool) -> None:
        """The space bar: held for push to talk, a press toggles listening in the other modes."""
        if down == self._space_down:
            return
        self._space_down = down
        if self.settings.mode == "ptt":
            (self.bridge.press if down else self.bridge.release)()
        elif down:
            self.toggle_listening()

    # --- closing ---

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        QApplication.instance().removeEventFilter(self)
        self.hide()  # gone at once for the user; stopping and saving finish behind it
        self._levels.stop()
        self.settings.geometry = bytes(self.saveGeometry().data())
        self.settings.prompt_preset = self.prompt.preset_id()
        self.settings.prompt_text = self.prompt.prompt()
        save_settings(self.settings, self.store)
        # Stop generating first (the user asked to quit), then save what was said.
        if not self.bridge.shutdown(timeout=1.0):
            log.warning("the inference thread did not stop within a second; leaving it to end with the process")
        t0 = time.monotonic()
        self.autosave()
        log.info("closing: autosave took %.2f s", time.monotonic() - t0)
        super().closeEvent(event)
