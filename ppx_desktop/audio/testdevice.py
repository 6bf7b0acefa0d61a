"""A sound card without hardware: a recording plays as the microphone, and what is played is kept.

`TestDevice` is an `AudioIO` backend with the small part of the ``sounddevice`` surface AudioIO
uses (see ``devices.py``): one input and one output device at 24 kHz, duplex or separate streams,
callbacks of `blocksize` frames from a clock thread. It serves the GUI tests, the screenshots
script and ``ppx-desktop --self-test`` on machines with no audio at all (CI, servers).

The clock runs at `speed` times real time: 1.0 behaves like a sound card (the app sees the same
timing as with a microphone), larger values let tests get through long inputs quickly. Audio
can be queued at any moment with `say`, so a test speaks exactly when it wants to.

With ``manual=True`` there is no clock thread: the caller runs the sound card one block at a time
with `advance`. Tests that count frames use it, because a wall clock on a loaded 2-core machine
stalls and then catches up in bursts, and a test cannot tell "ten frames while the button was
held" from "ten frames plus a burst".
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

RATE = 24_000
MAX_CATCH_UP_BLOCKS = 8  # after a stall (a loaded CI machine) replay at most this many blocks at once


class TestDeviceError(Exception):
    """Stands in for ``sounddevice.PortAudioError``."""


class _Status:
    input_overflow = False
    output_underflow = False

    def __bool__(self) -> bool:
        return False


class _Defaults:
    device = (0, 1)


class _Stream:
    def __init__(self, device: TestDevice, kind: str, blocksize: int, callback) -> None:
        self.device, self.kind, self.blocksize, self.callback = device, kind, int(blocksize), callback
        self.active = False
        self.closed = False
        self.latency = (0.0, 0.0) if kind == "duplex" else 0.0

    def start(self) -> None:
        if self.closed:
            raise TestDeviceError("stream is closed")
        self.active = True
        self.device._attach(self)

    def stop(self) -> None:
        self.active = False
        self.device._detach(self)

    def close(self) -> None:
        self.stop()
        self.closed = True


class TestDevice:
    """Args:
        mic: audio (24 kHz mono float32) the microphone hears first; silence after it.
        speed: the clock's speed relative to real time.
        loop: repeat `mic` forever instead of falling silent.
        record_seconds: how much played audio `played()` keeps (the oldest goes first).
        manual: no clock thread; blocks run only when `advance` is called.
    """

    __test__ = False  # not a pytest test class, despite the name
    PortAudioError = TestDeviceError

    def __init__(self, mic: np.ndarray | None = None, speed: float = 1.0, loop: bool = False,
                 record_seconds: float = 600.0, manual: bool = False) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self.manual = manual
        self.loop = loop
        self.default = _Defaults()
        self._mic: deque[np.ndarray] = deque()
        self._loop_source = None if mic is None else np.asarray(mic, np.float32).reshape(-1)
        if self._loop_source is not None:
            self._mic.append(self._loop_source)
        self._mic_offset = 0
        self._lock = threading.Lock()  # guards the mic queue and the recording (never held in a callback)
        self._played: deque[np.ndarray] = deque(maxlen=max(1, int(record_seconds * RATE / 1920)))
        self._streams: list[_Stream] = []
        self._clock: threading.Thread | None = None
        self._running = threading.Event()
        self.blocks = 0  # callbacks run so far (device time = blocks * blocksize)

    # --- the sounddevice surface AudioIO uses ---

    def query_hostapis(self):
        return [{"name": "Test"}]

    def query_devices(self):
        return [
            {"name": "Test microphone", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": float(RATE)},
            {"name": "Test speaker", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 1,
             "default_samplerate": float(RATE)},
        ]

    def check_input_settings(self, device=None, channels=None, dtype=None, samplerate=None, **_) -> None:
        self._check(samplerate)

    def check_output_settings(self, device=None, channels=None, dtype=None, samplerate=None, **_) -> None:
        self._check(samplerate)

    def _check(self, samplerate) -> None:
        if samplerate is not None and int(samplerate) != RATE:
            raise TestDeviceError(f"the test device runs at {RATE} Hz only, not {samplerate}")

    def Stream(self, samplerate=RATE, blocksize=1920, callback=None, **_):  # noqa: N802 (sounddevice's name)
        self._check(samplerate)
        return _Stream(self, "duplex", blocksize, callback)

    def InputStream(self, samplerate=RATE, blocksize=1920, callback=None, **_):  # noqa: N802
        self._check(samplerate)
        return _Stream(self, "input", blocksize, callback)

    def OutputStream(self, samplerate=RATE, blocksize=1920, callback=None, **_):  # noqa: N802
        self._check(samplerate)
        return _Stream(self, "output", blocksize, callback)

    # --- test controls ---

    def say(self, audio: np.ndarray) -> None:
        """Queues audio for the microphone, heard after what is already queued."""
        with self._lock:
            self._mic.append(np.asarray(audio, np.float32).reshape(-1).copy())

    def advance(self, blocks: int = 1) -> None:
        """Runs `blocks` callbacks now, in the calling thread (manual clock only)."""
        if not self.manual:
            raise RuntimeError("advance() drives a manual clock; this TestDevice runs its own")
        for _ in range(blocks):
            self._pump()

    def mic_pending_seconds(self) -> float:
        with self._lock:
            return (sum(len(a) for a in self._mic) - self._mic_offset) / RATE

    def played(self) -> np.ndarray:
        """Everything the speaker played (silence included), oldest first."""
        with self._lock:
            return np.concatenate(list(self._played)) if self._played else np.zeros(0, np.float32)

    def played_seconds(self, threshold: float = 1e-4) -> float:
        """Seconds of played audio that were not silent."""
        out = self.played()
        if not len(out):
            return 0.0
        blocks = out[: len(out) // 480 * 480].reshape(-1, 480)
        return float(np.sum(np.max(np.abs(blocks), axis=1) > threshold) * 480 / RATE)

    # --- the clock ---

    def _attach(self, stream: _Stream) -> None:
        with self._lock:
            if stream not in self._streams:
                self._streams.append(stream)
        if self.manual:
            return
        if self._clock is None or not self._clock.is_alive():
            self._running.set()
            self._clock = threading.Thread(target=self._run, name="ppx-test-audio", daemon=True)
            self._clock.start()

    def _detach(self, stream: _Stream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)
            idle = not self._streams
        if idle:
            self._running.clear()
            clock = self._clock
            if clock is not None and clock is not threading.current_thread():
                clock.join(timeout=2.0)
            self._clock = None

    def _next_mic(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        filled = 0
        with self._lock:
            while filled < n and self._mic:
                head = self._mic[0]
                take = min(n - filled, len(head) - self._mic_offset)
                out[filled:filled + take] = head[self._mic_offset:self._mic_offset + take]
                filled += take
                self._mic_offset += take
                if self._mic_offset >= len(head):
                    self._mic.popleft()
                    self._mic_offset = 0
                    if self.loop and self._loop_source is not None and not self._mic:
                        self._mic.append(self._loop_source)
        return out

    def _pump(self) -> None:
        with self._lock:
            streams = [s for s in self._streams if s.active]
        if not streams:
            return
        n = streams[0].blocksize
        indata = self._next_mic(n).reshape(n, 1)
        outdata = np.zeros((n, 1), np.float32)
        status = _Status()
        for s in streams:
            if s.kind == "duplex":
                s.callback(indata, outdata, n, None, status)
            elif s.kind == "input":
                s.callback(indata, n, None, status)
            else:
                s.callback(outdata, n, None, status)
        with self._lock:
            self._played.append(outdata[:, 0].copy())
        self.blocks += 1

    def _run(self) -> None:
        start = time.monotonic()
        done = 0
        while self._running.is_set():
            with self._lock:
                block = self._streams[0].blocksize if self._streams else 1920
            due = int((time.monotonic() - start) * self.speed * RATE / block)
            if due - done > MAX_CATCH_UP_BLOCKS:  # do not burst minutes of audio after a long stall
                done = due - MAX_CATCH_UP_BLOCKS
            if done < due:
                self._pump()
                done += 1
            else:
                wait = (done + 1) * block / (self.speed * RATE) - (time.monotonic() - start)
                if wait > 0:
                    time.sleep(min(wait, 0.02))  # short naps: stop() is noticed within 20 ms
