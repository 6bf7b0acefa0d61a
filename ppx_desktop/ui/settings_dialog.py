"""Settings: audio devices and echo handling, hands-free silence detection, sampling, engine.

Edits a copy of `AppSettings`; the window applies and stores it when the dialog is accepted.
Each group says when it takes effect: audio and turn detection at once (the window reopens the
devices), sampling with the next conversation, the engine when the model is next loaded (the
window offers to do that). The device lists hold the sound server's own devices by name (what
PortAudio alone shows on Linux are the pseudo-devices "pulse" and "default"), and "Test" shows
the chosen microphone's level live.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..audio.soundserver import ServerDevice
from .settings import CONTEXTS, DEVICES, DTYPES, HISTORY_SECONDS, QUANTS, AppSettings
from .widgets.meters import LevelBar

END_OF_TURN_CHOICES = [("silence", "After you pause (the silence above)"),
                       ("semantic", "When you finish your sentence (needs the transcript)")]
CONTEXT_CHOICES = [(f"{s}", f"Keep the persona and the last {s} s of conversation") for s in HISTORY_SECONDS] + [
    ("scroll", "Scroll like the reference (the persona fades after 4 minutes)")]
# PortAudio's names for a sound server (listed by their own names instead when the server answers).
PSEUDO_DEVICES = {"pulse", "default", "sysdefault", "pipewire", "jack", "dmix", "dsnoop"}

ECHO_CHOICES = [
    ("aec3", "Echo cancellation (speakers)"),
    ("duck", "Mute the microphone while the agent speaks (speakers, no barge-in)"),
    ("off", "Off (headphones)"),
]


def _combo(name: str, items, current) -> QComboBox:
    box = QComboBox()
    box.setObjectName(name)
    for value, label in items:
        box.addItem(label, value)
    index = box.findData(current)
    box.setCurrentIndex(max(0, index))
    return box


def device_choices(kind: str, devices, server: list[ServerDevice], current: str) -> list[tuple[str, str]]:
    """(value, label) for a device list: the default, the server's devices, other PortAudio ones."""
    items = [("", "System default")]
    items += [(d.spec, d.description + (" (default)" if d.is_default else "")) for d in server if d.kind == kind]
    for d in devices:
        if not _channels(d, kind):
            continue
        if server and d.name.split(" ")[0].lower() in PSEUDO_DEVICES:
            continue  # the server's devices are listed above by their own names
        items.append((d.name, d.name if not server else f"{d.name} (direct)"))
    if current and current not in [v for v, _ in items]:
        items.append((current, f"{current} (not connected)"))  # kept, not silently replaced
    return items


class SettingsDialog(QDialog):
    """Args:
        settings: the current settings (not modified; read the result from `result_settings()`).
        devices: `DeviceInfo`s from `audio.list_devices()` (may be empty when none can be listed).
        server: the sound server's devices (`audio.soundserver.server_devices()`).
        mic_test: makes a `MicTest` for a device spec (None: the microphone test is not offered).
    """

    def __init__(self, settings: AppSettings, devices=(), parent=None, server=(), mic_test=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(480)
        self._base = settings
        self._mic_test_factory = mic_test
        self._mic_test = None
        layout = QVBoxLayout(self)

        audio = QGroupBox("Audio (applies at once)")
        form = QFormLayout(audio)
        server = list(server)
        self.input_device = _combo("inputDevice", device_choices("input", devices, server, settings.input_device),
                                   settings.input_device)
        self.output_device = _combo("outputDevice",
                                    device_choices("output", devices, server, settings.output_device),
                                    settings.output_device)
        self.echo = _combo("echoMode", ECHO_CHOICES, settings.echo)
        mic_row = QHBoxLayout()
        mic_row.addWidget(self.input_device, 1)
        self.test_button = QPushButton("Test")
        self.test_button.setObjectName("micTest")
        self.test_button.setCheckable(True)
        self.test_button.setToolTip("Show this microphone's level: speak and watch the bar")
        self.test_button.setEnabled(mic_test is not None)
        self.test_button.toggled.connect(self._toggle_mic_test)
        mic_row.addWidget(self.test_button)
        form.addRow("Microphone", mic_row)
        self.mic_level = LevelBar("micTestLevel")
        self.mic_status = QLabel("Press Test, then speak: the bar should move.")
        self.mic_status.setObjectName("micTestStatus")
        self.mic_status.setWordWrap(True)
        level_col = QVBoxLayout()
        level_col.addWidget(self.mic_level)
        level_col.addWidget(self.mic_status)
        form.addRow("Level", level_col)
        form.addRow("Speakers", self.output_device)
        form.addRow("Echo handling", self.echo)
        layout.addWidget(audio)
        self._mic_timer = QTimer(self, interval=100, timeout=self._poll_mic)
        self.input_device.currentIndexChanged.connect(self._restart_mic_test)

        turns = QGroupBox("Hands-free turns (applies at once)")
        form = QFormLayout(turns)
        self.vad_threshold = QDoubleSpinBox()
        self.vad_threshold.setObjectName("vadThreshold")
        self.vad_threshold.setRange(0.05, 0.95)
        self.vad_threshold.setSingleStep(0.05)
        self.vad_threshold.setValue(settings.vad_threshold)
        self.vad_threshold.setToolTip("How sure the detector must be that you speak (higher ignores more noise)")
        self.end_silence = QDoubleSpinBox()
        self.end_silence.setObjectName("endSilence")
        self.end_silence.setRange(0.2, 5.0)
        self.end_silence.setSingleStep(0.1)
        self.end_silence.setSuffix(" s")
        self.end_silence.setValue(settings.vad_end_silence_s)
        self.end_silence.setToolTip("How long you pause before the agent answers")
        self.end_of_turn = _combo("endOfTurn", END_OF_TURN_CHOICES, settings.end_of_turn)
        self.end_of_turn.setToolTip("When you finish your sentence: the speech-to-text model hears that you are done "
                                    "and the agent answers after a short pause; a pause in the middle of a sentence "
                                    "waits for the silence above. Without the transcript, turns end after the silence.")
        form.addRow("Speech threshold", self.vad_threshold)
        form.addRow("Silence before answering", self.end_silence)
        form.addRow("Your turn ends", self.end_of_turn)
        layout.addWidget(turns)

        memory = QGroupBox("Long conversations")
        form = QFormLayout(memory)
        self.context = _combo("contextHistory", CONTEXT_CHOICES,
                              str(settings.context_history_s) if settings.context_refresh else "scroll")
        self.context.setToolTip("What happens when a conversation outlasts the model's 4-minute context")
        form.addRow("When the context fills", self.context)
        layout.addWidget(memory)

        sampling = QGroupBox("Sampling (applies to the next conversation)")
        form = QFormLayout(sampling)
        self.temp_text, self.top_k_text = self._pair(form, "Text", settings.temp_text, settings.top_k_text, 1000)
        self.temp_audio, self.top_k_audio = self._pair(form, "Audio", settings.temp_audio, settings.top_k_audio, 2048)
        seed_row = QHBoxLayout()
        self.random_seed = QCheckBox("Random")
        self.seed = QSpinBox()
        self.seed.setObjectName("seed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(max(0, settings.seed))
        self.random_seed.setChecked(settings.seed < 0)
        self.seed.setEnabled(settings.seed >= 0)
        self.random_seed.toggled.connect(lambda on: self.seed.setEnabled(not on))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.random_seed)
        form.addRow("Seed", seed_row)
        layout.addWidget(sampling)

        engine = QGroupBox("Engine (applies when the model is next loaded)")
        form = QFormLayout(engine)
        self.device = _combo("device", [(d, d) for d in DEVICES], settings.device)
        self.dtype = _combo("dtype", [(d, d) for d in DTYPES], settings.dtype)
        self.quant = _combo("quant", [(q, quant_label(q)) for q in QUANTS], settings.quant)
        form.addRow("Device", self.device)
        form.addRow("Precision", self.dtype)
        form.addRow("Quantisation", self.quant)
        self.context_frames = _combo("context_frames", [(c, context_label(c)) for c in CONTEXTS],
                                     settings.context_frames)
        self.context_frames.setToolTip("How much of the conversation the model keeps in view. A shorter context "
                                       "needs less GPU memory; the oldest part is forgotten sooner.")
        form.addRow("Context length", self.context_frames)
        self.offload = _combo("offload", [("off", "whole model on the GPU"),
                                          ("auto", "layers that do not fit stream from host memory (slow; "
                                                   "turn-based only)")], settings.offload)
        form.addRow("Small GPU", self.offload)
        self.transcription = QCheckBox("Write down my words too (speech-to-text beside the model)")
        self.transcription.setObjectName("transcription")
        self.transcription.setChecked(settings.transcription)
        self.transcription.setToolTip("Runs kyutai/stt-1b-en_fr in the same frame as PersonaPlex (download it in "
                                      "the setup dialog or with `ppx-desktop download --with-transcription`); "
                                      "from 0.9 GiB of GPU memory. Off frees it. Applies at once.")
        form.addRow("Transcript", self.transcription)
        layout.addWidget(engine)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._restore_defaults)
        layout.addWidget(buttons)

    # --- microphone test ---

    def _toggle_mic_test(self, on: bool) -> None:
        self._stop_mic_test()
        if not on or self._mic_test_factory is None:
            self.test_button.setText("Test")
            return
        self.test_button.setText("Stop test")
        try:
            self._mic_test = self._mic_test_factory(self.input_device.currentData() or None)
            self._mic_test.start()
        except Exception as exc:  # AudioDeviceError says what to do; anything else is shown as is
            self._mic_test = None
            self.mic_status.setText(f"Cannot test this microphone: {exc}")
            self.test_button.blockSignals(True)
            self.test_button.setChecked(False)
            self.test_button.setText("Test")
            self.test_button.blockSignals(False)
            return
        self.mic_status.setText(f"Listening to {self._mic_test.name}: speak, the bar should move.")
        self._mic_timer.start()

    def _restart_mic_test(self) -> None:
        if self.test_button.isChecked():
            self._toggle_mic_test(True)

    def _poll_mic(self) -> None:
        import time

        test = self._mic_test
        if test is None:
            return
        level = test.level_db()
        if level is not None:
            self.mic_level.set_db(level, time.monotonic())

    def _stop_mic_test(self) -> None:
        self._mic_timer.stop()
        if self._mic_test is not None:
            self._mic_test.stop()
            self._mic_test = None

    def done(self, result: int) -> None:  # closes the test device on OK, Cancel and Esc alike
        self._stop_mic_test()
        super().done(result)

    def _pair(self, form: QFormLayout, label: str, temp: float, top_k: int, k_max: int):
        row = QHBoxLayout()
        t = QDoubleSpinBox()
        t.setObjectName(f"temp{label}")
        t.setRange(0.0, 2.0)
        t.setSingleStep(0.05)
        t.setPrefix("temperature ")
        t.setValue(temp)
        k = QSpinBox()
        k.setObjectName(f"topK{label}")
        k.setRange(0, k_max)
        k.setPrefix("top-k ")
        k.setValue(top_k)
        row.addWidget(t)
        row.addWidget(k)
        form.addRow(label, row)
        return t, k

    def _restore_defaults(self) -> None:
        keep = {f: getattr(self._base, f) for f in ("mode", "voice", "prompt_preset", "prompt_text", "max_steps",
                                                     "early_stop", "model_dir", "geometry")}
        fresh = SettingsDialog(AppSettings(**keep))
        for name in ("input_device", "output_device", "echo", "context", "device", "dtype", "quant", "offload",
                     "context_frames", "end_of_turn"):
            getattr(self, name).setCurrentIndex(getattr(fresh, name).currentIndex())
        for name in ("vad_threshold", "end_silence", "temp_text", "top_k_text", "temp_audio", "top_k_audio", "seed"):
            getattr(self, name).setValue(getattr(fresh, name).value())
        self.random_seed.setChecked(fresh.random_seed.isChecked())
        self.transcription.setChecked(fresh.transcription.isChecked())
        fresh.deleteLater()

    def result_settings(self) -> AppSettings:
        return dataclasses.replace(
            self._base,
            input_device=self.input_device.currentData(), output_device=self.output_device.currentData(),
            echo=self.echo.currentData(), vad_threshold=round(self.vad_threshold.value(), 2),
            vad_end_silence_s=round(self.end_silence.value(), 2), end_of_turn=self.end_of_turn.currentData(),
            temp_text=self.temp_text.value(),
            top_k_text=self.top_k_text.value(), temp_audio=self.temp_audio.value(),
            top_k_audio=self.top_k_audio.value(), seed=-1 if self.random_seed.isChecked() else self.seed.value(),
            device=self.device.currentData(), dtype=self.dtype.currentData(), quant=self.quant.currentData(),
            offload=self.offload.currentData(), context_frames=self.context_frames.currentData(),
            transcription=self.transcription.isChecked(),
            context_refresh=self.context.currentData() != "scroll",
            context_history_s=(self._base.context_history_s if self.context.currentData() == "scroll"
                               else int(self.context.currentData())),
        )


def quant_label(quant: str) -> str:
    """The Settings' words for a precision, with the memory planner's figures for the released
    model (gpucheck's thresholds, held to the planner by a test)."""
    from ..gpucheck import BF16_FREE_GIB, INT4_FREE_GIB, INT8_FREE_GIB

    return {"auto": "automatic (the best that fits the GPU)",
            "none": f"none: the precision above (bfloat16: about {BF16_FREE_GIB:.1f} GiB of GPU memory)",
            "int8": f"int8 weights (about {INT8_FREE_GIB:.1f} GiB)",
            "int4": f"int4 weights (about {INT4_FREE_GIB:.1f} GiB; Ampere or newer)"}.get(quant, quant)


def context_label(frames: int) -> str:
    """What a context length gives (minutes in view) and costs (GiB of context cache, bfloat16)."""
    from ..gpucheck import CONTEXT_GIB_PER_1000_FRAMES, FULL_CONTEXT

    if frames == 0:
        return "automatic (4 minutes, shorter only if the GPU needs it)"
    saved = (FULL_CONTEXT - frames) / 1000 * CONTEXT_GIB_PER_1000_FRAMES
    tail = "the model's full context" if frames >= FULL_CONTEXT else f"saves {saved:.2f} GiB of GPU memory"
    return f"{frames / 750:g} minutes ({frames} frames): {tail}"


def _channels(device, kind: str) -> bool:
    for attr in (f"max_{kind}_channels", f"{kind}_channels", f"max_{kind}s"):
        if hasattr(device, attr):
            return getattr(device, attr) > 0
    return True
