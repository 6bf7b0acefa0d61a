"""A fake ``sounddevice``: numpy in, numpy out, driven block by block (``pump``) or by a clock thread.

The mic hears ``mic`` (a source signal) plus ``echo_gain`` times what the fake speaker played
``echo_delay`` samples earlier, so echo handling can be measured without a sound card.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class FakePortAudioError(Exception):
    pass


class _Status:
    input_overflow = False
    output_underflow = False

    def __bool__(self) -> bool:
        return False


class _Default:
    device = (0, 1)


class FakeStream:
    def __init__(self, sd: FakeSoundDevice, kind: str, samplerate: int, blocksize: int, callback, **kw) -> None:
        self.sd, self.kind, self.rate, self.block, self.callback = sd, kind, samplerate, blocksize, callback
        self.active = False
        self.closed = False
        self.latency = (0.01, 0.02) if kind == "duplex" else 0.01

    def start(self) -> None:
        if not self.sd.plugged:
            raise FakePortAudioError("device unavailable")
        self.active = True
        self.sd.streams.append(self)

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False
        self.closed = True
        if self in self.sd.streams:
            self.sd.streams.remove(self)


class FakeSoundDevice:
    PortAudioError = FakePortAudioError

    def __init__(self, mic: np.ndarray | None = None, rates=(24000,), duplex_ok: bool = True, echo_delay: int = 0,
                 echo_gain: float = 0.0, out_name: str = "Fake Speaker", seconds: float = 120.0) -> None:
        self.rates, self.duplex_ok = tuple(rates), duplex_ok
        self.rate = self.rates[0]
        self.mic = np.zeros(0, np.float32) if mic is None else np.asarray(mic, np.float32)
        self.echo_delay, self.echo_gain = int(echo_delay), float(echo_gain)
        self.default = _Default()
        self.out_name = out_name
        self.streams: list[FakeStream] = []
        self.plugged = True
        self.speaker = np.zeros(int(seconds * self.rate), np.float32)  # everything played, by sample time
        self.pos = 0  # samples of device time elapsed
        self._clock: threading.Thread | None = None
        self._clock_on = threading.Event()

    # --- sounddevice surface ---

    def query_hostapis(self):
        return [{"name": "Fake API"}]

    def query_devices(self):
        if not self.plugged:
            return []
        return [
            {"name": "Fake Mic", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": float(self.rate)},
            {"name": self.out_name, "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
             "default_samplerate": float(self.rate)},
        ]

    def _check(self, samplerate, **kw) -> None:
        if not self.plugged or int(samplerate) not in self.rates:
            raise FakePortAudioError(f"Invalid sample rate {samplerate}")

    def check_input_settings(self, device=None, channels=None, dtype=None, samplerate=None, **kw) -> None:
        self._check(samplerate)

    def check_output_settings(self, device=None, channels=None, dtype=None, samplerate=None, **kw) -> None:
        self._check(samplerate)

    def Stream(self, samplerate, blocksize, callback, **kw):  # noqa: N802 - sounddevice's name
        if not self.duplex_ok:
            raise FakePortAudioError("duplex not supported")
        return FakeStream(self, "duplex", samplerate, blocksize, callback)

    def InputStream(self, samplerate, blocksize, callback, **kw):  # noqa: N802
        return FakeStream(self, "input", samplerate, blocksize, callback)

    def OutputStream(self, samplerate, blocksize, callback, **kw):  # noqa: N802
        return FakeStream(self, "output", samplerate, blocksize, callback)

    # --- test controls ---

    def _mic_block(self, n: int) -> np.ndarray:
        x = np.zeros(n, np.float32)
        src = self.mic[self.pos : self.pos + n]
        x[: src.shape[0]] = src
        if self.echo_gain:
            lo = self.pos - self.echo_delay
            idx = np.arange(lo, lo + n)
            ok = idx >= 0
            x[ok] += self.echo_gain * self.speaker[idx[ok]]
        return x

    def pump(self, blocks: int = 1) -> None:
        """Run ``blocks`` audio blocks through every active stream, like PortAudio would."""
        for _ in range(blocks):
            active = [s for s in list(self.streams) if s.active]
            if not active:
                return
            n = active[0].block
            st = _Status()
            indata = self._mic_block(n).reshape(n, 1)
            outdata = np.zeros((n, 1), np.float32)
            for s in active:
                if s.kind == "duplex":
                    s.callback(indata, outdata, n, None, st)
                elif s.kind == "input":
                    s.callback(indata, n, None, st)
                else:
                    s.callback(outdata, n, None, st)
            if any(s.kind != "input" for s in active):
                self.speaker[self.pos : self.pos + n] = outdata[:, 0]
            self.pos += n

    def start_clock(self, speed: float = 1.0) -> None:
        """Pump from a thread at ``speed`` times real time (the callback thread of a real device)."""
        self._clock_on.set()

        def run() -> None:
            next_t = time.monotonic()
            while self._clock_on.is_set():
                now = time.monotonic()
                if not any(s.active for s in self.streams):
                    next_t = now  # no catch-up burst for the time without a stream
                    time.sleep(0.002)
                elif now >= next_t:
                    self.pump(1)
                    next_t += self.streams[0].block / self.rate / speed if self.streams else 0.0
                    next_t = max(next_t, now - 0.5)
                else:
                    time.sleep(min(0.002, next_t - now))

        self._clock = threading.Thread(target=run, daemon=True)
        self._clock.start()

    def stop_clock(self) -> None:
        self._clock_on.clear()
        if self._clock is not None:
            self._clock.join(2.0)

    def unplug(self) -> None:
        """The headset is pulled: streams stop and the device disappears."""
        self.plugged = False
        for s in list(self.streams):
            s.active = False

    def plug(self) -> None:
        self.plugged = True
