"""A microphone test: opens one input device on its own and reports its level, for the settings.

The callback only copies samples into a ring (the audio-thread rules of stream.py); the caller
(the settings dialog's timer) reads what arrived and gets its level. It runs beside the app's own
streams, so a device can be tried before the conversation switches to it.
"""

from __future__ import annotations

from typing import Any

from . import soundserver
from .devices import AudioDeviceError, list_devices, load_backend, resolve_device
from .resample import SILENCE_DB, level_db
from .ringbuffer import RingBuffer


class MicTest:
    """Args:
        device: as `AudioConfig.input_device` takes it (None: the default microphone).
        backend: the ``sounddevice`` module or a fake.
    """

    def __init__(self, device=None, backend: Any = None) -> None:
        self.device = device
        self.backend = backend if backend is not None else load_backend()
        self._stream = None
        self._ring: RingBuffer | None = None
        self.name = ""
        self.samples = 0  # how many samples were read so far

    def start(self) -> None:
        """Opens the device; raises `AudioDeviceError` saying what to do."""
        devices = list_devices(self.backend)
        spec, env = soundserver.route(self.device, "input", [d.name for d in devices])
        info = resolve_device(spec, "input", devices)
        rate = int(info.default_samplerate) or 48_000
        self._ring = RingBuffer(rate)  # a second: read ten times a second by the dialog
        ring = self._ring

        def callback(indata, frames, time_info, status) -> None:
            ring.write(indata[:, 0])

        try:
            with soundserver.environment(env):
                self._stream = self.backend.InputStream(device=info.index, channels=1, samplerate=rate,
                                                        dtype="float32", blocksize=max(1, rate // 50),
                                                        callback=callback)
                self._stream.start()
        except Exception as exc:  # PortAudio's errors vary by host API; the message is what counts
            self.stop()
            raise AudioDeviceError(f"Cannot open '{info.name}' for a test ({exc}). Close other apps using it, "
                                   "or choose another microphone.") from exc
        self.name = self.device[len(soundserver.PREFIX):] if soundserver.is_server_spec(self.device) else info.name

    def level_db(self) -> float | None:
        """The level of what arrived since the last call; None when nothing did."""
        ring = self._ring
        if ring is None:
            return None
        n = ring.available()
        if n == 0:
            return None
        x = ring.read(n)
        self.samples += len(x)
        return level_db(x) if len(x) else SILENCE_DB

    @property
    def running(self) -> bool:
        return self._stream is not None

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            for call in (stream.stop, stream.close):
                try:
                    call()
                except Exception:  # a device that vanished cannot be closed cleanly; nothing to keep
                    pass

