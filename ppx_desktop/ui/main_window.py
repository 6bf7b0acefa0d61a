"""The main window: mode, voice, persona, response length, the big talk control, meters, transcript.

It only composes widgets and forwards their signals to the `EngineBridge`; everything the model
does arrives back as events on `bridge.event` (queued to this thread) and is rendered here.
Problems the user can act on (no audio device, a lost device, echo, a model that failed to load)
stay in the banner at the top until whatever resolves them happens (ui/widgets/problem_banner.py).
The keyboard works everywhere (ui/keyboard.py): Tab reaches every control, the space bar talks.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
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
from ..session.controller import ListenState, UserTurn
from . import settings_flow
from .engine_bridge import EngineBridge, VoiceCreated
from .keyboard import KeyboardControl
from .problem_routing import ProblemRouter
from .save_flow import SaveFlow
from .settings import AppSettings, load_settings, prompt_fields, save_settings
from .status import display_state
from .transcript_model import Transcript
from .widgets.audio_controls import AudioControls
from .widgets.meters import Meters
from .widgets.mode_selector import ModeSelector
from .widgets.problem_banner import Problem, ProblemBanner
from .widgets.prompt_editor import PromptEditor
from .widgets.response_length import ResponseLength
from .widgets.talk_button import TalkButton
from .widgets.transcript_view import TranscriptView
from .widgets.voice_picker import VoicePicker

log = logging.getLogger(__name__)
AGENT_ACTIVE = ("thinking", "buffering", "speaking", "replaying", "previewing")


class MainWindow(QMainWindow):
    """Args:
        bridge: the engine bridge (owns the worker, the controller and the audio).
        store: where settings live (a throwaway one in tests).
        audio_factory: makes the `AudioIO` for new settings (None: device changes need a restart).
    """

    def __init__(self, bridge: EngineBridge, store: QSettings | None = None, audio_factory=None) -> None:
        super().__init__()
        self.setWindowTitle("PersonaPlex")
        self.bridge = bridge
        self.store = store if store is not None else QSettings()
        self.settings: AppSettings = load_settings(self.store)
        self.audio_factory = audio_factory
        self.transcript = Transcript()
        self.model_dir: Path | None = None
        self.demo = False
        self.model_ready = False
        self.worker_state = ""
        self.listen_state = ""
        self._space_down = False
        self.listening_on = False  # as the controller last reported it (ListenState)
        self._build()
        self._restore()
        bridge.event.connect(self._on_event)
        self._levels = QTimer(self, interval=100, timeout=self._poll_levels)
        self._levels.start()
        self._autosave_timer = QTimer(self, singleShot=True, interval=1500, timeout=self.autosave)
        self.keyboard = KeyboardControl(self, self.space)
        QApplication.instance().installEventFilter(self.keyboard)

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
            ("save", "Save…", QKeySequence.StandardKey.Save, lambda: self.saving.ask_save()),
            ("copy", "Copy transcript", "Ctrl+Shift+C", lambda: self.transcript_view.copy_to_clipboard()),
            ("folder", "Open folder", "Ctrl+Shift+O", lambda: self.saving.open_conversations_folder()),
            ("stop", "Stop agent", "Esc", self.stop_agent),
            ("mute", "Mute microphone", "Ctrl+M", lambda: self.audio_controls.mute.toggle()),
            ("settings", "Settings…", QKeySequence.StandardKey.Preferences, self.open_settings),
            ("model", "Model…", "Ctrl+Shift+M", self.choose_model),
            ("quit", "Quit", QKeySequence.StandardKey.Quit, self.close),
        ]:
            action = QAction(text, self)
            action.setShortcut(QKeySequence(keys))
            action.setToolTip(f"{text} ({QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText)})")
            action.triggered.connect(slot)
            self.actions[name] = action
            if name in ("new", "save", "settings", "model"):
                bar.addAction(action)
            else:
                self.addAction(action)
        if not self.actions["settings"].shortcut().toString():
            self.actions["settings"].setShortcut(QKeySequence("Ctrl+,"))
        self.actions["model"].setToolTip("Download the real model, or choose a model folder or the demo")

        left = QWidget()
        col = QVBoxLayout(left)
        col.setContentsMargins(8, 8, 8, 8)
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
        self.audio_controls = AudioControls()
        col.addWidget(self.audio_controls)
        self.meters = Meters()
        col.addWidget(self.meters)
        col.addStretch(1)
        # A short window scrolls the controls instead of squeezing them.
        self.left_scroll = QScrollArea()
        self.left_scroll.setWidgetResizable(True)
        self.left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.left_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.left_scroll.setWidget(left)
        self.left_scroll.setMinimumWidth(300)
        self.left_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # its controls take the focus, not the frame

        right = QWidget()
        rcol = QVBoxLayout(right)
        rcol.setContentsMargins(4, 8, 8, 8)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Transcript</b>"))
        head.addStretch(1)
        self.header_buttons: dict[str, QPushButton] = {}
        for name in ("copy", "save", "folder"):
            button = QPushButton(self.actions[name].text())
            button.setToolTip(self.actions[name].toolTip())
            button.clicked.connect(self.actions[name].trigger)
            head.addWidget(button)
            self.header_buttons[name] = button
        self.header_buttons["folder"].setToolTip("Open the folder where conversations are saved")
        rcol.addLayout(head)
        self.transcript_view = TranscriptView(self.transcript)
        rcol.addWidget(self.transcript_view)

        self.split = QSplitter()
        self.split.addWidget(self.left_scroll)
        self.split.addWidget(right)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setChildrenCollapsible(False)
        self.split.setSizes([440, 560])
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 0)
        self.banner = ProblemBanner()
        outer.addWidget(self.banner)
        outer.addWidget(self.split, 1)
        self.setCentralWidget(central)
        self.saving = SaveFlow(self)
        self.problems = ProblemRouter(self)
        self.statusBar().addPermanentWidget(self.saving.label)
        self.statusBar().showMessage("Starting…")
        self.resize(1000, 700)

        self.modes.mode_changed.connect(self.set_mode)
        self.voices.voice_changed.connect(self._voice_changed)
        self.voices.add_voice_requested.connect(self._add_voice)
        self.voices.preview_requested.connect(self.preview_voice)
        self.prompt.prompt_changed.connect(lambda _t: self.apply_prompt.setEnabled(self.model_ready))
        self.prompt.save_requested.connect(self._save_prompt)
        self.apply_prompt.clicked.connect(self.start_conversation)
        self.length.changed.connect(self._length_changed)
        self.talk.pressed_to_talk.connect(self.bridge.press)
        self.talk.released_to_talk.connect(self.bridge.release)
        self.talk.toggle_requested.connect(self.toggle_listening)
        self.audio_controls.stop_requested.connect(self.stop_agent)
        self.audio_controls.mute_changed.connect(self._mute_changed)
        self.audio_controls.volume_changed.connect(self._volume_changed)
        self.transcript_view.replay_requested.connect(self._replay)

    def _tab_order(self) -> None:
        """Tab goes through the window as it reads: modes, voice, persona, length, talk, transcript."""
        m, v, p, ln, a = self.modes.buttons, self.voices, self.prompt, self.length, self.audio_controls
        chains = [[m["ptt"], m["handsfree"], m["duplex"], v.combo, v.preview, v.add_button, p.preset, p.save_button],
                  [p.text, self.apply_prompt, ln.slider, ln.spin, ln.early_stop, self.talk, a.stop, a.mute, a.volume,
                   *self.header_buttons.values(), self.transcript_view.scroll]]
        for chain in chains:
            for first, second in zip(chain, chain[1:]):
                QWidget.setTabOrder(first, second)

    def _restore(self) -> None:
        s = self.settings
        if s.geometry:
            self.restoreGeometry(s.geometry)
        self.prompt.set_presets(list_prompts(), s.prompt_preset, s.prompt_text or None, prompt_fields(s))
        self.voices.set_voices(list_voices(None), s.voice)
        self.length.set_value(s.max_steps, s.early_stop)
        self.audio_controls.set_volume(s.volume)
        self.modes.set_mode(s.mode)
        self.set_mode(s.mode)
        self._tab_order()
        self._render_state()

    # --- commands ---

    def load_model(self, model_dir: Path | None, demo: bool = False) -> None:
        s = self.settings
        self.model_ready = False
        self.demo = demo
        self.bridge.start()
        self.bridge.load_model(model_dir=model_dir, demo=demo, device=None if s.device == "auto" else s.device,
                               dtype=None if s.dtype == "auto" else s.dtype,
                               quant=None if s.quant == "none" else s.quant,
                               offload_layers=None if s.offload == "auto" else 0, context=s.context_frames or None,
                               transcription=s.transcription)
        self._render_state()

    def choose_model(self) -> None:
        """The setup dialog from the running app: download, a folder, or the demo."""
        from .app import ask_for_model

        choice = ask_for_model(self)
        if choice is not None:
            self.load_model(*choice)

    def start_conversation(self) -> None:
        s = self.settings
        sampling = SamplingConfig(temp_text=s.temp_text, top_k_text=s.top_k_text, temp_audio=s.temp_audio,
                                  top_k_audio=s.top_k_audio)
        voice, prompt = self.voices.voice(), self.prompt.prompt()
        note = self.transcript.set_persona(voice, prompt)
        if note is not None:
            self.transcript_view.sync()
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
        self.listening_on = False  # every mode starts stopped (the controller does the same)
        self.meters.reset_speed_warning()

    def toggle_listening(self) -> None:
        """Start/stop in hands-free and duplex; the controller owns the switch (see there)."""
        if self.settings.mode != "ptt" and self.model_ready and self.bridge.audio_ok:
            self.bridge.toggle_listening()

    def stop_agent(self) -> None:
        """Stop: the agent's answer and its queued audio; a live duplex session ends."""
        self.bridge.interrupt()
        self.statusBar().showMessage("Stopped the agent", 3000)

    def preview_voice(self, voice: str) -> None:
        if not self.model_ready or self.worker_state not in ("idle", "ready"):
            self.statusBar().showMessage("A voice can be previewed while the agent is quiet", 5000)
            return
        self.bridge.preview_voice(voice, self.prompt.prompt())

    def new_conversation(self) -> None:
        self.saving.new_conversation()  # what was said is saved before it goes
        self.transcript.clear()
        self.transcript_view.clear()
        self.bridge.controller.clear_recording()
        self.bridge.new_conversation()

    def save_to(self, folder: Path) -> list[Path]:
        return self.saving.save_to(folder)

    def autosave(self) -> None:
        self.saving.autosave()

    @property
    def autosave_dir(self) -> Path | None:
        return self.saving.autosave_dir

    @property
    def saved_label(self) -> QLabel:
        return self.saving.label

    def settings_dialog(self):
        return settings_flow.dialog_for(self)

    def open_settings(self) -> None:
        dialog = self.settings_dialog()
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: AppSettings) -> None:
        settings_flow.apply(self, new)
        self._render_state()

    def _voice_changed(self, voice: str) -> None:
        self.settings.voice = voice
        if self.model_ready or self.worker_state in ("idle", "ready"):
            self.start_conversation()

    def _length_changed(self, steps: int, early_stop: bool) -> None:
        self.settings.max_steps, self.settings.early_stop = steps, early_stop
        self.bridge.set_response(steps, early_stop)

    def _mute_changed(self, on: bool) -> None:
        self.bridge.set_muted(on)
        self.talk.set_muted(on)

    def _volume_changed(self, volume: float) -> None:
        self.settings.volume = volume
        self.bridge.set_volume(volume)

    def _save_prompt(self, name: str, text: str) -> None:
        try:
            save_user_prompt(name, text)
        except ValueError as exc:
            self.banner.set(Problem("prompt", str(exc), "error", dismissable=True))
            return
        self.prompt.set_presets(list_prompts(), self.prompt.preset_id(), text, self.prompt.field_values())

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
        """A passing error (dismissable); problems with a cause to fix use their own key."""
        if message:
            self.banner.set(Problem("error", message, "error", dismissable=True))
        else:
            self.banner.clear("error")

    # --- events from the worker, the controller and the audio ---

    def _on_event(self, event) -> None:
        if self.problems.handle(event):
            pass  # a problem shown or resolved: the state below is all that changes
        elif isinstance(event, ev.Status):
            self.worker_state = event.state
            if event.detail and event.state not in ("error", "buffering"):  # those show elsewhere
                self.statusBar().showMessage(event.detail, 0 if event.state == "loading" else 8000)
        elif isinstance(event, ev.Progress):
            what = {"load": "Loading the model", "prompt": "Preparing voice and persona"}.get(event.task, event.task)
            self.statusBar().showMessage(f"{what}… {100 * event.done // max(1, event.total)} %")
        elif isinstance(event, ev.ModelLoaded):
            self._on_model_loaded(event)
        elif isinstance(event, ev.ConversationReady):
            log.info("conversation ready: voice %s (%.1f s%s)", event.voice, event.seconds,
                     ", from cache" if event.from_cache else "")
            self.model_ready = True
            self.statusBar().showMessage(f"Ready: {event.voice} ({event.seconds:.1f} s"
                                         + (", from cache)" if event.from_cache else ")")
                                         + "".join(f"; {note}" for note in event.notes), 8000)
        elif isinstance(event, ev.TurnStarted):
            if event.mode == "duplex":  # both sides are live at once: the user's bubble first
                self.transcript.add_user(event.turn_id, None, "duplex")
                self.transcript.agent(event.turn_id, "duplex")
                self.transcript_view.sync()
        elif isinstance(event, ev.AgentText):
            entry = self.transcript.add_agent_text(event.turn_id, event.text, self.settings.mode)
            self.transcript_view.refresh_entry(entry)
        elif isinstance(event, ev.TurnFinished):
            entry = self.transcript.finish_agent(event.turn_id, event.text, event.agent_audio_s, event.end,
                                                 self.settings.mode)
            self.transcript_view.refresh_entry(entry)
            if event.mode == "duplex":
                self.meters.reset_speed_warning()
            self._autosave_timer.start()
        elif isinstance(event, ev.StepStats):
            self.meters.set_stats(event.step_ms, event.rtf, event.lag_frames, event.context_used,
                                  event.context_size, self.settings.mode == "duplex", event.dropped_input,
                                  event.wait_s, event.refreshes, event.refresh_ms)
        elif isinstance(event, ev.ContextRefreshed):
            log.info("context refreshed (%s): %d -> %d frames, kept %d, %.0f ms", event.reason, event.frames_before,
                     event.frames_after, event.kept_frames, event.stall_ms)
            kept_s = event.kept_frames / FRAME_RATE
            self.statusBar().showMessage(f"Context refreshed: the persona and the last {kept_s:.0f} s of conversation "
                                         f"kept ({event.stall_ms:.0f} ms)", 8000)
        elif isinstance(event, ev.UserText):
            entry = self.transcript.user_words(event.turn_id, event.text, event.final, self.settings.mode,
                                               event.start, event.end)
            self.transcript_view.sync()
            self.transcript_view.refresh_entry(entry)
        elif isinstance(event, ev.Notice):
            self.banner.set(Problem(event.kind, event.message, "info", dismissable=True))
        elif isinstance(event, ev.TranscriptionChanged):
            self.statusBar().showMessage("Your words are written down (speech-to-text, " + event.precision + ")"
                                         if event.precision else "Speech-to-text is off", 6000)
        elif isinstance(event, ev.VoicePreview):
            self.statusBar().showMessage(f"Playing a preview of {event.voice}", 5000)
        elif isinstance(event, UserTurn):
            log.info("user turn %d (%s, %.2f s)", event.turn_id, event.mode, event.duration_s)
            self.transcript.add_user(event.turn_id, event.audio, event.mode, event.started, event.duration_s)
            self.transcript_view.sync()
            self._autosave_timer.start()
        elif isinstance(event, ListenState):
            self.listen_state = event.state
            if event.mode != "ptt" and event.mode == self.settings.mode:
                self.listening_on = event.state != "stopped"
        elif isinstance(event, VoiceCreated):
            self.voices.set_voices(list_voices(self.model_dir), event.name)
            self.statusBar().showMessage(f"Voice {event.name} is ready" + "".join(f"; {n}" for n in event.notes), 8000)
        self._render_state()

    def _on_model_loaded(self, event: ev.ModelLoaded) -> None:
        self.model_dir = Path(event.model_dir)
        streamed = event.offloaded_layers
        weights = event.dtype + ("" if event.quant == "none" else f", {event.quant} weights")
        self.statusBar().showMessage(f"Model {self.model_dir.name} on {event.device} ({weights})"
                                     + (" — tiny demo model" if event.demo else "")
                                     + (f", {streamed} layers in host memory: turn-based modes only"
                                        if streamed else ""))
        reason = ("not among the demo model's few voices (Model… gets the real model, with all 18)"
                  if event.demo else f"not in this model's folder ({self.model_dir / 'voices'})")
        self.voices.set_voices(list_voices(self.model_dir), self.settings.voice, reason)
        self.modes.set_available("duplex", not streamed,
                                 f"{streamed} of the model's layers stream from host memory every frame "
                                 "(GPU too small), too slow for real time")
        self.meters.set_device(event.device)
        self.start_conversation()

    def _render_state(self) -> None:
        state = display_state(self.worker_state, self.listen_state, self.model_ready,
                              self.bridge.audio_ok or not self.bridge.started)
        self.talk.set_state(state)
        live = self.settings.mode == "duplex" and self.listen_state not in ("", "stopped")
        self.audio_controls.set_agent_active(state in AGENT_ACTIVE or live)
        self.transcript_view.set_replay_enabled(state in ("ready", "listening", "stopped"))
        idle = self.model_ready and self.worker_state in ("idle", "ready")
        self.voices.set_preview_available(idle, "load a model first" if not self.model_ready
                                          else "possible while the agent is quiet")

    def _poll_levels(self) -> None:
        stats = self.bridge.audio.stats
        self.meters.set_levels(stats.input_level_db, stats.output_level_db)

    # --- keyboard: the space bar talks, unless a text field has the focus (ui/keyboard.py) ---

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
        QApplication.instance().removeEventFilter(self.keyboard)
        self.hide()  # gone at once for the user; stopping and saving finish behind it
        self._levels.stop()
        self.settings.geometry = bytes(self.saveGeometry().data())
        self.settings.prompt_preset = self.prompt.preset_id()
        self.settings.prompt_text = self.prompt.prompt()
        self.settings.prompt_fields = json.dumps(self.prompt.field_values())
        save_settings(self.settings, self.store)
        # Stop generating first (the user asked to quit), then save what was said.
        if not self.bridge.shutdown(timeout=1.0):
            log.warning("the inference thread did not stop within a second; leaving it to end with the process")
        t0 = time.monotonic()
        self.autosave()
        log.info("closing: autosave took %.2f s", time.monotonic() - t0)
        super().closeEvent(event)
