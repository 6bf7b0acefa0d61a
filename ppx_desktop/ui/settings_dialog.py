"""Settings: audio devices and echo handling, hands-free silence detection, sampling, engine.

Edits a copy of `AppSettings`; the window applies and stores it when the dialog is accepted.
Engine changes (device, dtype, quantisation) take effect when the model is next loaded, which
the window offers to do.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QSpinBox,
    QVBoxLayout,
)

from .settings import CONTEXTS, DEVICES, DTYPES, HISTORY_SECONDS, QUANTS, AppSettings

CONTEXT_CHOICES = [(f"{s}", f"Keep the persona and the last {s} s of conversation") for s in HISTORY_SECONDS] + [
    ("scroll", "Scroll like the reference (the persona fades after 4 minutes)")]

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


class SettingsDialog(QDialog):
    """Args:
        settings: the current settings (not modified; read the result from `result_settings()`).
        devices: `DeviceInfo`s from `audio.list_devices()` (may be empty when none can be listed).
    """

    def __init__(self, settings: AppSettings, devices=(), parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(480)
        self._base = settings
        layout = QVBoxLayout(self)

        audio = QGroupBox("Audio")
        form = QFormLayout(audio)
        inputs = [("", "System default")] + [(d.name, d.name) for d in devices if _channels(d, "input")]
        outputs = [("", "System default")] + [(d.name, d.name) for d in devices if _channels(d, "output")]
        self.input_device = _combo("inputDevice", inputs, settings.input_device)
        self.output_device = _combo("outputDevice", outputs, settings.output_device)
        self.echo = _combo("echoMode", ECHO_CHOICES, settings.echo)
        form.addRow("Microphone", self.input_device)
        form.addRow("Speakers", self.output_device)
        form.addRow("Echo handling", self.echo)
        layout.addWidget(audio)

        turns = QGroupBox("Hands-free turns")
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
        form.addRow("Speech threshold", self.vad_threshold)
        form.addRow("Silence before answering", self.end_silence)
        layout.addWidget(turns)

        memory = QGroupBox("Long conversations")
        form = QFormLayout(memory)
        self.context = _combo("contextHistory", CONTEXT_CHOICES,
                              str(settings.context_history_s) if settings.context_refresh else "scroll")
        self.context.setToolTip("What happens when a conversation outlasts the model's 4-minute context")
        form.addRow("When the context fills", self.context)
        layout.addWidget(memory)

        sampling = QGroupBox("Sampling")
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
        layout.addWidget(engine)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._restore_defaults)
        layout.addWidget(buttons)

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
                     "context_frames"):
            getattr(self, name).setCurrentIndex(getattr(fresh, name).currentIndex())
        for name in ("vad_threshold", "end_silence", "temp_text", "top_k_text", "temp_audio", "top_k_audio", "seed"):
            getattr(self, name).setValue(getattr(fresh, name).value())
        self.random_seed.setChecked(fresh.random_seed.isChecked())
        fresh.deleteLater()

    def result_settings(self) -> AppSettings:
        return dataclasses.replace(
            self._base,
            input_device=self.input_device.currentData(), output_device=self.output_device.currentData(),
            echo=self.echo.currentData(), vad_threshold=round(self.vad_threshold.value(), 2),
            vad_end_silence_s=round(self.end_silence.value(), 2), temp_text=self.temp_text.value(),
            top_k_text=self.top_k_text.value(), temp_audio=self.temp_audio.value(),
            top_k_audio=self.top_k_audio.value(), seed=-1 if self.random_seed.isChecked() else self.seed.value(),
            device=self.device.currentData(), dtype=self.dtype.currentData(), quant=self.quant.currentData(),
            offload=self.offload.currentData(), context_frames=self.context_frames.currentData(),
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
