"""What the app remembers between runs: one dataclass, stored in QSettings key by key.

The window reads `AppSettings` once and passes plain values on (to `AudioConfig`, `VadConfig`,
`LoadModel`, `StartConversation`); nothing below the UI reads settings itself. Every value is
validated on load: a missing, mistyped or out-of-range entry (a hand-edited or corrupt store)
falls back to its default instead of breaking the start of the app.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from dataclasses import dataclass

from PySide6.QtCore import QSettings

from ..session.semantic_turn import END_OF_TURN_MODES

log = logging.getLogger(__name__)

MODES = ("ptt", "handsfree", "duplex")
ECHO_MODES = ("aec3", "duck", "off")
DEVICES = ("auto", "cuda", "cpu")
DTYPES = ("auto", "bfloat16", "float32")
QUANTS = ("auto", "none", "int8", "int4")
CONTEXTS = (0, 3000, 2250, 1500, 750)  # frames (80 ms); 0 = automatic
OFFLOADS = ("off", "auto")
STEP_SECONDS = 0.08  # one model step = one 80 ms codec frame
MIN_STEPS, MAX_STEPS, DEFAULT_STEPS = 50, 500, 75
HISTORY_SECONDS = (30, 60, 120)  # conversation kept by a context refresh (session/context.py)


class Key(str, enum.Enum):
    """QSettings keys, grouped like the settings dialog (buzz's Settings.Key pattern)."""

    MODE = "conversation/mode"
    VOICE = "conversation/voice"
    PROMPT_PRESET = "conversation/prompt_preset"
    PROMPT_TEXT = "conversation/prompt_text"
    PROMPT_FIELDS = "conversation/prompt_fields"
    MAX_STEPS = "conversation/max_steps"
    EARLY_STOP = "conversation/early_stop"
    CONTEXT_REFRESH = "conversation/context_refresh"
    CONTEXT_HISTORY = "conversation/context_history_s"
    INPUT_DEVICE = "audio/input_device"
    OUTPUT_DEVICE = "audio/output_device"
    ECHO = "audio/echo"
    VOLUME = "audio/volume"
    VAD_THRESHOLD = "audio/vad_threshold"
    VAD_END_SILENCE = "audio/vad_end_silence_s"
    END_OF_TURN = "audio/end_of_turn"
    TEMP_TEXT = "sampling/temp_text"
    TOP_K_TEXT = "sampling/top_k_text"
    TEMP_AUDIO = "sampling/temp_audio"
    TOP_K_AUDIO = "sampling/top_k_audio"
    SEED = "sampling/seed"
    DEVICE = "engine/device"
    DTYPE = "engine/dtype"
    QUANT = "engine/quant"
    OFFLOAD = "engine/offload"
    CONTEXT_FRAMES = "engine/context_frames"
    TRANSCRIPTION = "engine/transcription"
    MODEL_DIR = "engine/model_dir"
    USE_DEMO = "engine/use_demo"
    GEOMETRY = "window/geometry"


@dataclass
class AppSettings:
    mode: str = "ptt"
    voice: str = "NATF2"
    prompt_preset: str = "assistant"
    prompt_text: str = ""
    prompt_fields: str = ""  # JSON object: the preset's field values the text was made from
    max_steps: int = DEFAULT_STEPS
    early_stop: bool = True
    context_refresh: bool = True  # False: the context scrolls like the reference's
    context_history_s: int = 60
    input_device: str = ""  # "" = the system default device
    output_device: str = ""
    echo: str = "aec3"
    volume: float = 1.0  # output volume, 0..1
    vad_threshold: float = 0.5
    vad_end_silence_s: float = 1.5
    end_of_turn: str = "silence"  # hands-free: "semantic" ends a turn when the speech-to-text model hears you finish
    temp_text: float = 0.7
    top_k_text: int = 25
    temp_audio: float = 0.8
    top_k_audio: int = 250
    seed: int = -1  # -1 = a new random seed per conversation
    device: str = "auto"
    dtype: str = "auto"
    quant: str = "auto"  # the best that fits the GPU (engine/model.py choose_quant)
    offload: str = "auto"  # layers the GPU cannot hold stream from host memory (turn-based only)
    context_frames: int = 0  # frames of conversation in view at most (0: the model's own, shorter if the GPU needs)
    transcription: bool = True  # the user's words by the speech-to-text model, when it is downloaded and fits
    model_dir: str = ""
    use_demo: bool = False  # the first-run choice of the demo model, kept until a real model is chosen
    geometry: bytes = b""


# field -> (key, check); a check returns the cleaned value or raises ValueError/TypeError.
def _choice(options):
    def check(value):
        if value not in options:
            raise ValueError(value)
        return value
    return check


def _int_choice(options):
    def check(value):  # the ini backend hands numbers back as strings
        number = int(value)
        if number not in options:
            raise ValueError(value)
        return number
    return check


def _int_range(lo, hi):
    def check(value):
        number = int(value)
        if not lo <= number <= hi:
            raise ValueError(value)
        return number
    return check


def _float_range(lo, hi):
    def check(value):
        number = float(value)
        if not lo <= number <= hi:
            raise ValueError(value)
        return number
    return check


def _bool(value):
    # QSettings' ini backend hands booleans back as the strings "true"/"false".
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1"):
        return True
    if str(value).lower() in ("false", "0"):
        return False
    raise ValueError(value)


def _json_object(value):
    text = str(value)
    if text and not isinstance(json.loads(text), dict):
        raise ValueError(value)
    return text


def _bytes(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if hasattr(value, "data"):  # QByteArray
        return bytes(value.data())
    raise TypeError(value)


_FIELDS = {
    "mode": (Key.MODE, _choice(MODES)),
    "voice": (Key.VOICE, str),
    "prompt_preset": (Key.PROMPT_PRESET, str),
    "prompt_text": (Key.PROMPT_TEXT, str),
    "prompt_fields": (Key.PROMPT_FIELDS, _json_object),
    "max_steps": (Key.MAX_STEPS, _int_range(MIN_STEPS, MAX_STEPS)),
    "early_stop": (Key.EARLY_STOP, _bool),
    "context_refresh": (Key.CONTEXT_REFRESH, _bool),
    "context_history_s": (Key.CONTEXT_HISTORY, lambda v: _choice(HISTORY_SECONDS)(int(v))),
    "input_device": (Key.INPUT_DEVICE, str),
    "output_device": (Key.OUTPUT_DEVICE, str),
    "echo": (Key.ECHO, _choice(ECHO_MODES)),
    "volume": (Key.VOLUME, _float_range(0.0, 1.0)),
    "vad_threshold": (Key.VAD_THRESHOLD, _float_range(0.0, 1.0)),
    "vad_end_silence_s": (Key.VAD_END_SILENCE, _float_range(0.2, 5.0)),
    "end_of_turn": (Key.END_OF_TURN, _choice(END_OF_TURN_MODES)),
    "temp_text": (Key.TEMP_TEXT, _float_range(0.0, 2.0)),
    "top_k_text": (Key.TOP_K_TEXT, _int_range(0, 1000)),
    "temp_audio": (Key.TEMP_AUDIO, _float_range(0.0, 2.0)),
    "top_k_audio": (Key.TOP_K_AUDIO, _int_range(0, 2048)),
    "seed": (Key.SEED, _int_range(-1, 2**31 - 1)),
    "device": (Key.DEVICE, _choice(DEVICES)),
    "dtype": (Key.DTYPE, _choice(DTYPES)),
    "quant": (Key.QUANT, _choice(QUANTS)),
    "offload": (Key.OFFLOAD, _choice(OFFLOADS)),
    "context_frames": (Key.CONTEXT_FRAMES, _int_choice(CONTEXTS)),
    "transcription": (Key.TRANSCRIPTION, _bool),
    "model_dir": (Key.MODEL_DIR, str),
    "use_demo": (Key.USE_DEMO, _bool),
    "geometry": (Key.GEOMETRY, _bytes),
}


def load_settings(store: QSettings | None = None) -> AppSettings:
    """Reads every field; each unreadable one keeps its default (and is logged, not raised)."""
    store = store if store is not None else QSettings()
    values = {}
    for name, (key, check) in _FIELDS.items():
        if not store.contains(key.value):
            continue
        raw = store.value(key.value)
        try:
            values[name] = check(raw)
        except (TypeError, ValueError):
            log.warning("setting %s has an unusable value %r; using the default", key.value, raw)
    return AppSettings(**values)


def save_settings(settings: AppSettings, store: QSettings | None = None) -> None:
    store = store if store is not None else QSettings()
    for field in dataclasses.fields(settings):
        key, _ = _FIELDS[field.name]
        store.setValue(key.value, getattr(settings, field.name))
    store.sync()


def prompt_fields(settings: AppSettings) -> dict[str, str]:
    """The saved field values of the persona preset ({} when none were saved)."""
    try:
        data = json.loads(settings.prompt_fields) if settings.prompt_fields else {}
    except ValueError:
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def step_seconds(steps: int) -> float:
    return steps * STEP_SECONDS
