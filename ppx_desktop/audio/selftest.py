"""Echo self-test: play a probe, measure how much of it comes back into the mic, recommend an echo mode.

The probe is seeded white noise (a flat spectrum gives GCC-PHAT a single sharp peak). Played and
captured audio come from the same audio blocks (:meth:`AudioIO.read_aligned`), so the lag between
them is the true round trip, speaker to mic, through every buffer on the way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .devices import AudioDeviceError
from .echo import Aec3, echo_coupling
from .resample import FRAME, RATE, SILENCE_DB, level_db
from .stream import AudioConfig, AudioIO

DETECT_CORR = 0.2  # normalized correlation above which the probe is taken as having come back
MAX_DELAY_S = 1.0
NO_AUDIO_S = 5.0  # no frame for this long: the device stopped (a loaded machine can stall for seconds)
ATTEMPTS = 3  # recordings with dropped audio are repeated this often


@dataclass(frozen=True)
class EchoTestResult:
    latency_ms: float  # measured round trip if echo came back, else what PortAudio reports
    echo_db: float  # echo level relative to the played probe (0 dB = as loud as played)
    recommended_mode: str  # "aec3" | "duck" | "off"
    detected: bool
    correlation: float
    probe_db: float
    noise_floor_db: float
    aec_erle_db: float | None  # how much AEC3 removed from the probe's echo (None if not run)
    reported_latency_ms: float

    def summary(self) -> str:
        lat = f"{self.latency_ms:.0f} ms round trip" + ("" if self.detected else " (reported by the driver)")
        echo = f"echo {self.echo_db:.1f} dB" if self.detected else "no echo came back"
        erle = f", AEC3 removes {self.aec_erle_db:.1f} dB" if self.aec_erle_db is not None else ""
        corr = f"correlation {self.correlation:.2f}"
        return f"{lat}; {echo} ({corr}){erle}; recommended echo mode: {self.recommended_mode}"


def _probe(seconds: float, level: float) -> np.ndarray:
    n = int(round(seconds * RATE / FRAME)) * FRAME
    x = np.random.default_rng(20261122).standard_normal(n).astype(np.float32)
    x *= np.float32(10 ** (level / 20.0) / np.sqrt(np.mean(x**2)))
    fade = np.linspace(0.0, 1.0, 240, dtype=np.float32)
    x[:240] *= fade
    x[-240:] *= fade[::-1]
    return x


def _aec3_available() -> bool:
    try:
        Aec3()
    except RuntimeError:
        return False
    return True


def _record_probe(io: AudioIO, probe: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Play ``probe`` once and read aligned frames until its echo window has passed.

    Returns (mic frames, played frames), or None when captured audio was dropped meanwhile (the
    reader fell more than the capture ring behind): a hole shifts the mic against the reference,
    so such a recording cannot be measured.
    """
    dropped = io.stats.dropped_input
    for i in range(0, probe.shape[0], FRAME):
        io.write_frame(probe[i : i + FRAME])
    # The frames read first were captured before the probe played (whatever backlog the capture
    # ring held), so the window is counted from the frame the probe appears in as played audio,
    # not from the first frame read: a fixed count cut the echo off whenever the reader lagged.
    need = probe.shape[0] // FRAME + int(np.ceil(MAX_DELAY_S * RATE / FRAME)) + 2
    backlog_max = int(np.ceil(io.config.capture_seconds * RATE / FRAME)) + 8
    mic: list[np.ndarray] = []
    played: list[np.ndarray] = []
    first: int | None = None
    while first is None or len(mic) - first < need:
        got = io.read_aligned(timeout=NO_AUDIO_S)
        if got is None:
            raise AudioDeviceError("Audio stopped during the echo test; check the devices and try again.")
        mic.append(got.mic)
        played.append(got.played)
        if first is None and np.any(got.played):
            first = len(mic) - 1
        if first is None and len(mic) > backlog_max + probe.shape[0] // FRAME:
            raise AudioDeviceError("The echo test sound never reached the speaker; check the output device.")
    return None if io.stats.dropped_input > dropped else (mic, played)


def echo_self_test(io_or_config: AudioIO | AudioConfig | None = None, seconds: float = 1.5, level_db_fs: float = -20.0,
                   backend: object = None) -> EchoTestResult:
    """Play ``seconds`` of noise at ``level_db_fs`` and measure latency and echo level.

    Accepts a running :class:`AudioIO` (its echo mode is restored afterwards) or a config to open one.
    Raises :class:`AudioDeviceError` when the devices stop or the computer is too busy to keep up.
    """
    own = not isinstance(io_or_config, AudioIO)
    io = AudioIO(io_or_config or AudioConfig(), backend=backend) if own else io_or_config
    old_mode, old_monitor = io.echo_mode, io.config.monitor_echo
    io.config.monitor_echo = False
    io.set_echo_mode("off")
    probe = _probe(seconds, level_db_fs)
    rec = None
    try:
        if own:
            io.start()
        if io.read_aligned(timeout=4.0) is None:
            raise AudioDeviceError("The microphone delivered no audio within 4 s; check the input device.")
        io.clear_playback()
        while io.read_aligned(timeout=0) is not None:  # drain what queued up while starting
            pass
        quiet = [io.read_aligned(timeout=NO_AUDIO_S) for _ in range(3)]
        for attempt in range(ATTEMPTS):
            if attempt:
                # Discard everything the spoiled attempt left behind. The capture queue can hold
                # seconds of it when the reader lagged, and those frames are misaligned: a dropped
                # block removes mic and reference together, yet its sound still echoes a block
                # later, which measured the round trip one block short. So: stop the probe, drop
                # the queued frames, then read fresh ones until its echo has died away.
                io.clear_playback()
                while io.read_aligned(timeout=0) is not None:
                    pass
                for _ in range(int(np.ceil(MAX_DELAY_S * RATE / FRAME))):
                    io.read_aligned(timeout=NO_AUDIO_S)
            rec = _record_probe(io, probe)
            if rec is not None:
                break
        if rec is None:
            raise AudioDeviceError(
                f"Captured audio was dropped in all {ATTEMPTS} echo test attempts: the computer is too busy to "
                "read the microphone in time. Close other programs and try again."
            )
    finally:
        io.set_echo_mode(old_mode)
        io.config.monitor_echo = old_monitor
        if own:
            io.close()
    mic, played = rec
    offset_ms = io.reference_offset_ms()  # separate streams: the pairs' own time apart
    mic_all, ref_all = np.concatenate(mic), np.concatenate(played)
    noise = level_db(np.concatenate([q.mic for q in quiet if q is not None])) if any(quiet) else SILENCE_DB
    lag, corr, gain_db = echo_coupling(ref_all, mic_all, int(MAX_DELAY_S * RATE))
    probe_db = level_db(ref_all[np.abs(ref_all) > 0]) if np.any(ref_all) else SILENCE_DB
    detected = corr >= DETECT_CORR and gain_db > -60.0
    erle = None
    if detected and _aec3_available():
        aec = Aec3(RATE, int(round(1000 * lag / RATE)))
        out = np.concatenate([aec.process(m, r) for m, r in zip(mic, played)])
        p0 = int(np.flatnonzero(ref_all)[0]) + lag  # where the probe's echo starts in the recording
        half = slice(p0 + probe.shape[0] // 2, p0 + probe.shape[0])  # after a short convergence
        erle = level_db(mic_all[half]) - level_db(out[half])
    if not detected:
        mode = "off"
    else:
        mode = "aec3" if _aec3_available() else "duck"
    return EchoTestResult(
        latency_ms=1000.0 * lag / RATE + offset_ms if detected else io.latency_ms,
        echo_db=gain_db if detected else min(gain_db, noise - probe_db),
        recommended_mode=mode,
        detected=detected,
        correlation=corr,
        probe_db=probe_db,
        noise_floor_db=noise,
        aec_erle_db=erle,
        reported_latency_ms=io.latency_ms,
    )
