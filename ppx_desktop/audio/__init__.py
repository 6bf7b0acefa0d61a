"""Audio between the sound card and the model: 24 kHz mono frames of 1920 samples (80 ms).

No Qt and no model code here (``files.py`` handles audio files; the rest is live audio).
Heavy or optional pieces (PortAudio, the AEC library, the VAD model) load on first use.
"""

from __future__ import annotations

from .devices import AudioDeviceError, DeviceInfo, list_devices, looks_like_headphones
from .echo import ECHO_MODES
from .recorder import Recorder
from .resample import FRAME, RATE, level_db
from .selftest import EchoTestResult, echo_self_test
from .stream import AlignedFrame, AudioConfig, AudioEvent, AudioIO, AudioStats
from .vad import SileroVad, TurnDetector, TurnEvent, VadConfig

__all__ = [
    "ECHO_MODES",
    "FRAME",
    "RATE",
    "AlignedFrame",
    "AudioConfig",
    "AudioDeviceError",
    "AudioEvent",
    "AudioIO",
    "AudioStats",
    "DeviceInfo",
    "EchoTestResult",
    "Recorder",
    "SileroVad",
    "TurnDetector",
    "TurnEvent",
    "VadConfig",
    "echo_self_test",
    "level_db",
    "list_devices",
    "looks_like_headphones",
]
