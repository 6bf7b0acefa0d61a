"""Echo handling for live duplex talk: pluggable cancellers fed with the exact played frames.

Modes (``AudioConfig.echo``):

* ``"aec3"`` (default): WebRTC AEC3 through ``pywebrtc-audio``. It estimates the echo delay itself
  (measured robust to a 300 ms delay and to delay jumps, where Speex-style linear filters collapse),
  takes whole 1920-sample float32 frames at 24 kHz and costs about 1 ms per frame.
* ``"duck"``: half-duplex. While the agent's audio is audible (plus a hangover covering the
  round-trip latency) the mic is replaced by silence, unless the mic is clearly louder than any
  echo could be (barge-in). Needs no library.
* ``"off"``: headphones; the mic passes untouched. :class:`EchoMonitor` then watches for echo anyway
  so the app can warn.

Every canceller has ``process(mic, ref) -> frame`` where ``ref`` is the frame played during the
same audio block as ``mic`` was captured; all run outside the audio callback.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np

from .resample import FRAME, RATE, SILENCE_DB, level_db

ECHO_MODES = ("aec3", "duck", "off")


class EchoCanceller(Protocol):
    mode: str

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class NoEcho:
    """Headphones: the mic passes untouched."""

    mode = "off"

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        return mic

    def reset(self) -> None:
        pass


class Aec3:
    """WebRTC AEC3 (``pywebrtc_audio.AudioProcessor``) on 24 kHz float32 frames.

    Args:
        rate: sample rate of the frames.
        delay_hint_ms: the stream's round-trip latency; AEC3 searches around it.
        noise_suppression: also run WebRTC noise suppression (off by default: the model hears the
            room as it is, and NS smears steady tones).
    """

    mode = "aec3"

    def __init__(self, rate: int = RATE, delay_hint_ms: int = 0, noise_suppression: bool = False) -> None:
        try:
            from pywebrtc_audio import AudioProcessor
        except ImportError as e:
            raise RuntimeError(
                "Echo cancellation needs the pywebrtc-audio package: pip install pywebrtc-audio "
                "(or choose the 'duck' or 'off' echo mode)."
            ) from e
        self._args = dict(
            sample_rate=int(rate),
            echo_cancellation=True,
            noise_suppression=bool(noise_suppression),
            stream_delay_ms=max(0, int(delay_hint_ms)),
        )
        self._apm = AudioProcessor(**self._args)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        near = np.ascontiguousarray(mic, dtype=np.float32)
        return self._apm.process(near, np.ascontiguousarray(ref, dtype=np.float32))

    def reset(self) -> None:
        self._apm.reset()


class Ducker:
    """Half-duplex gate: silence the mic while the agent is audible, unless the user clearly barges in.

    Args:
        latency_s: round-trip latency; echo of a played frame can arrive this late.
        hangover_s: extra time the gate stays closed after the agent stops (room reverberation).
        threshold_db: the agent counts as audible above this output level.
        echo_gain_db: how loud echo can be relative to the played level (measured by the self-test;
            0 dB assumes the worst case, a mic as loud as the speaker).
        barge_in_margin_db: the mic must exceed the expected echo by this much to pass.
    """

    mode = "duck"

    def __init__(
        self,
        latency_s: float = 0.35,
        hangover_s: float = 0.3,
        threshold_db: float = -50.0,
        echo_gain_db: float = 0.0,
        barge_in_margin_db: float = 10.0,
    ) -> None:
        self.threshold_db = threshold_db
        self.echo_gain_db = echo_gain_db
        self.barge_in_margin_db = barge_in_margin_db
        n = max(1, int(np.ceil((latency_s + hangover_s) * RATE / FRAME)) + 1)
        self._ref_levels: deque[float] = deque([SILENCE_DB] * n, maxlen=n)
        self.gated_frames = 0

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        self._ref_levels.append(level_db(ref))
        loudest = max(self._ref_levels)
        if loudest < self.threshold_db:
            return mic
        if level_db(mic) > loudest + self.echo_gain_db + self.barge_in_margin_db:
            return mic
        self.gated_frames += 1
        return np.zeros_like(mic)

    def reset(self) -> None:
        for _ in range(len(self._ref_levels)):
            self._ref_levels.append(SILENCE_DB)


def make_canceller(mode: str, delay_hint_ms: int = 0, noise_suppression: bool = False) -> EchoCanceller:
    if mode == "aec3":
        return Aec3(RATE, delay_hint_ms, noise_suppression)
    if mode == "duck":
        return Ducker(latency_s=max(0.1, delay_hint_ms / 1000.0))
    if mode == "off":
        return NoEcho()
    raise ValueError(f"Unknown echo mode {mode!r}; choose one of: {', '.join(ECHO_MODES)}")


FIT_TAPS = 64  # echo path modelled as a 2.7 ms FIR around the main delay
FIT_PRE = 8  # taps before the GCC-PHAT peak (the peak of a fractional delay spreads both ways)


def echo_coupling(ref: np.ndarray, mic: np.ndarray, max_lag: int) -> tuple[int, float, float]:
    """Find how ``ref`` comes back in ``mic``: (lag in samples, correlation, echo gain in dB).

    GCC-PHAT picks the lag (sharp peak even for coloured signals). The level and the correlation
    come from a least-squares FIR over a few milliseconds around that lag, not from a single tap:
    a real echo path is never a whole number of samples (resampling in the sound server, room
    acoustics), and one tap measured white noise through a half-sample delay 4.4 dB too quiet at
    correlation 0.69. The correlation is the multiple correlation of the fit (1: the mic is a
    filtered copy of ``ref``); the gain is the fitted echo's energy relative to ``ref``'s.
    """
    n = ref.shape[0] + mic.shape[0]
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    r = np.fft.rfft(ref.astype(np.float64), nfft)
    m = np.fft.rfft(mic.astype(np.float64), nfft)
    cross = m * np.conj(r)
    cc = np.fft.irfft(cross / (np.abs(cross) + 1e-12), nfft)[: max_lag + 1]
    lag = int(np.argmax(cc))
    start = max(lag - FIT_PRE, 0)
    x = ref[: mic.shape[0] - start].astype(np.float64)  # mic[start + i] ~ sum_k h[k] x[i - k]
    y = mic[start : start + x.shape[0]].astype(np.float64)
    ex, ey = float(np.dot(x, x)), float(np.dot(y, y))
    if ex <= 0 or ey <= 0 or x.shape[0] <= FIT_TAPS:
        return lag, 0.0, SILENCE_DB
    nfft = 1 << int(np.ceil(np.log2(2 * x.shape[0])))
    fx, fy = np.fft.rfft(x, nfft), np.fft.rfft(y, nfft)
    auto = np.fft.irfft(fx * np.conj(fx), nfft)[:FIT_TAPS]  # sum_i x[i] x[i - k]
    xcorr = np.fft.irfft(fy * np.conj(fx), nfft)[:FIT_TAPS]  # sum_i y[i] x[i - k]
    k = np.arange(FIT_TAPS)
    toeplitz = auto[np.abs(k[:, None] - k[None, :])]
    h = np.linalg.solve(toeplitz + 1e-9 * auto[0] * np.eye(FIT_TAPS), xcorr)
    echo = max(float(h @ xcorr), 0.0)  # energy of the fitted echo, h' R h at the optimum
    corr = float(np.sqrt(min(echo / ey, 1.0)))
    return lag, corr, (10.0 * np.log10(echo / ex) if echo > 0 else SILENCE_DB)


class EchoMonitor:
    """Watches (mic, played) pairs while echo handling is off and says when the agent comes back in the mic.

    Every ``check_s`` seconds it correlates the last ``window_s`` of played audio with the mic over
    lags up to ``max_delay_s``; echo is reported when the correlation exceeds ``min_corr`` and the
    echo is louder than ``min_echo_db`` relative to the played audio.
    """

    def __init__(
        self, window_s: float = 3.0, check_s: float = 1.0, max_delay_s: float = 0.6, min_corr: float = 0.3,
        min_echo_db: float = -40.0,
    ) -> None:
        self._n = int(window_s * RATE / FRAME)
        self._every = max(1, int(check_s * RATE / FRAME))
        self._max_lag = int(max_delay_s * RATE)
        self.min_corr, self.min_echo_db = min_corr, min_echo_db
        self._mic: deque[np.ndarray] = deque(maxlen=self._n)
        self._ref: deque[np.ndarray] = deque(maxlen=self._n)
        self._count = 0
        self.last: tuple[int, float, float] | None = None

    def push(self, mic: np.ndarray, ref: np.ndarray) -> tuple[int, float, float] | None:
        """Add a frame pair; returns (lag, corr, echo_db) when echo is detected at this check."""
        self._mic.append(np.array(mic, dtype=np.float32))
        self._ref.append(np.array(ref, dtype=np.float32))
        self._count += 1
        if self._count % self._every or len(self._ref) < self._n:
            return None
        ref_all, mic_all = np.concatenate(self._ref), np.concatenate(self._mic)
        if level_db(ref_all) < -50.0:
            return None
        self.last = echo_coupling(ref_all, mic_all, self._max_lag)
        _, corr, gain_db = self.last
        return self.last if corr >= self.min_corr and gain_db >= self.min_echo_db else None
