"""Microphone and speaker as 24 kHz frames of 1920 samples: :class:`AudioIO`.

Threads and what they may touch:

* **PortAudio callback** (audio thread): copies captured samples into the capture ring, queued
  playback out of the playback ring, and the block it just played into the reference ring. Nothing
  else: no allocation of buffers, no locks, no logging, no Qt. Empty playback plays silence. Counters
  it bumps are plain ints only it writes.
* **Engine / UI thread** (the caller): :meth:`AudioIO.read_frame` pulls a captured block and the
  reference played in the *same* callback, resamples if the device is not at 24 kHz, runs echo
  handling and returns the frame; :meth:`AudioIO.write_frame` and :meth:`AudioIO.clear_playback`
  feed the playback ring. One thread reads and one thread writes (single producer, single consumer
  per ring, see ``ringbuffer.py``).
* **Supervisor thread** (ours): notices a stream that stopped or went silent (unplugged headset,
  sound server restart), reports it through ``on_event``, and reopens the devices once they are
  back. All swaps go through one ``_Pipe`` object replaced atomically, so readers never lock.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import soundserver
from .devices import AudioDeviceError, DeviceInfo, list_devices, load_backend, rescan, resolve_device
from .echo import ECHO_MODES, EchoCanceller, EchoMonitor, make_canceller
from .resample import FRAME, RATE, SILENCE_DB, Reframer, StreamResampler, level_db
from .ringbuffer import RingBuffer

log = logging.getLogger(__name__)

POLL_S = 0.004  # read_frame polls: waking it from the callback would need a lock (Event/Condition)


@dataclass
class AudioConfig:
    """Audio settings the UI passes in; devices by index, name (or part of it) or None for the default."""

    input_device: int | str | None = None
    output_device: int | str | None = None
    echo: str = "aec3"  # "aec3" | "duck" | "off"
    latency: str | float = "low"
    duplex: bool | None = None  # None: one duplex stream when the devices allow it
    samplerate: int | None = None  # device rate; None: 24 kHz if both devices accept it
    noise_suppression: bool = False
    capture_seconds: float = 2.0
    # Bounded playback queue; when full the oldest audio is dropped. In the turn-based modes the
    # inference worker produces a whole answer (up to 500 frames = 40 s) faster than real time and
    # queues all of it at once, so the queue must hold 40 s plus headroom, or the start of long
    # answers would be dropped before it is heard.
    playback_seconds: float = 45.0
    stall_timeout_s: float = 2.5  # no callbacks for this long = device lost (first callback can take 1.7 s)
    retry_s: float = 1.0
    monitor_echo: bool = True  # with echo "off", warn when the agent's voice comes back in the mic
    underrun_gap_s: float = 0.5  # playback running dry followed by more audio within this = underrun

    def __post_init__(self) -> None:
        if self.echo not in ECHO_MODES:
            raise ValueError(f"Unknown echo mode {self.echo!r}; choose one of: {', '.join(ECHO_MODES)}")


@dataclass
class AudioStats:
    overruns: int = 0  # PortAudio input overflows
    underruns: int = 0  # gaps in agent audio (playback ran dry, then more came)
    dropped_input: int = 0  # captured samples dropped because frames were not read in time
    input_level_db: float = SILENCE_DB
    output_level_db: float = SILENCE_DB
    device_errors: int = 0
    dropped_output: int = 0  # queued playback samples dropped (queue full)
    callbacks: int = 0
    samplerate: int = 0
    duplex: bool = False
    latency_ms: float = 0.0
    echo_mode: str = ""
    connected: bool = False
    # Sample counts against the wall clock, from the callbacks (the current stream only): a
    # capture that delivered less audio than the time between its first and latest callback
    # lost some before it reached us (the sound server or the machine fell behind).
    output_underflows: int = 0  # PortAudio output underflows (the callback came too late)
    captured_s: float = 0.0  # audio PortAudio delivered, after the first callback
    capture_wall_s: float = 0.0  # wall time from the first to the latest input callback
    played_s: float = 0.0  # audio handed to PortAudio for playback, after the first callback
    playback_wall_s: float = 0.0

    @property
    def capture_deficit_s(self) -> float:
        """Wall time of input callbacks not covered by delivered audio (about 0 when none was lost)."""
        return self.capture_wall_s - self.captured_s

    @property
    def playback_deficit_s(self) -> float:
        return self.playback_wall_s - self.played_s


@dataclass(frozen=True)
class AudioEvent:
    kind: str  # "device_lost" | "device_restored" | "echo_detected"
    message: str
    time: float = field(default_factory=time.monotonic)


@dataclass
class AlignedFrame:
    frame: np.ndarray  # [1920] after echo handling
    mic: np.ndarray  # [1920] as captured
    played: np.ndarray  # [1920] played during the same audio block (echo reference)


class _Pipe:
    """Everything tied to one open stream: rings, resamplers, callback-owned counters."""

    def __init__(self, rate: int, duplex: bool, cfg: AudioConfig) -> None:
        self.rate, self.duplex = rate, duplex
        self.block = int(round(FRAME * rate / RATE))
        cap = max(4 * self.block, int(cfg.capture_seconds * rate))
        self.cap, self.ref = RingBuffer(cap), RingBuffer(cap)
        self.play_limit = max(4 * self.block, int(cfg.playback_seconds * rate))
        # Room beyond the limit: a full queue drops its oldest audio by asking the callback to skip
        # (request_skip), but that space only comes back on the callback's next read. A producer
        # that runs faster than real time writes several frames between two callbacks, so give it
        # about a second of headroom (with two blocks only, the newest frames were refused).
        self.play = RingBuffer(self.play_limit + max(2 * self.block, rate))
        self.in_rs, self.ref_rs = StreamResampler(rate, RATE), StreamResampler(rate, RATE)
        self.out_rs = StreamResampler(RATE, rate)
        self.cap_fifo, self.ref_fifo = Reframer(FRAME), Reframer(FRAME)
        # Separate streams: reference pairing, caller side only (see `next_reference`).
        self.ref_debt = 0
        self.ref_min = self.ref_seen = 0
        # Callback times per block (indexed by block number), to tell how far apart in time the
        # paired mic and reference blocks were handled: the self-test's round trip adds it.
        self._n_times = cap // self.block + 16
        self.cap_times = np.zeros(self._n_times)
        self.ref_times = np.zeros(self._n_times)
        self.ref_offsets: collections.deque[float] = collections.deque(maxlen=64)
        self.gain = 1.0  # output volume, applied as the callback plays (so it acts at once)
        # written only by the callback(s)
        self.callbacks = 0
        self.overflows = 0
        self.dropped_in = 0
        self.short_blocks = 0
        self.underflows = 0
        # Samples after the first callback and the times of the first and latest (AudioStats).
        self.in_samples = self.out_samples = 0
        self.in_t0 = self.in_t1 = self.out_t0 = self.out_t1 = 0.0

    # --- caller side ---

    REF_WINDOW_BLOCKS = 64  # ~5 s: the reference backlog is judged by its minimum over this long
    REF_SLACK_BLOCKS = 2  # backlog kept for the callbacks' burstiness
    REF_TRIM_BLOCKS = 8  # a backlog that never drops below this (640 ms) is clock drift: trim it

    def next_reference(self, mic_position: int) -> np.ndarray:
        """The played block to pair with the next captured block, with separate streams.

        Paired by sample count: the k-th captured block with the k-th played block, so the
        offset between them stays constant and AEC3's delay estimator absorbs it. Pairing by
        arrival does not work: separate streams call back in bursts (often two blocks at once),
        and trimming the backlog whenever it looked large shifted the reference by a block or
        two every few seconds (the echo correlation measured on PulseAudio fell from 0.93 to 0.55). Only a
        backlog that stays large for seconds (output and input clocks drifting apart) is trimmed,
        once, down to a little slack.
        """
        block = self.block
        if self.ref_debt:  # reference samples already paired as silence (the output was behind)
            self.ref_debt -= self.ref.read(min(self.ref_debt, self.ref.available())).shape[0]
        avail = self.ref.available()
        self.ref_min = avail if self.ref_seen == 0 else min(self.ref_min, avail)
        self.ref_seen += 1
        if self.ref_seen >= self.REF_WINDOW_BLOCKS:
            if self.ref_min > self.REF_TRIM_BLOCKS * block:
                self.ref.read(self.ref_min - self.REF_SLACK_BLOCKS * block)
            self.ref_seen = 0
        ref_position = self.ref.read_position
        ref = self.ref.read(block)
        if ref.shape[0] < block:
            self.ref_debt += block - ref.shape[0]
            ref = np.concatenate([ref, np.zeros(block - ref.shape[0], np.float32)])
        else:
            t_mic = self.cap_times[(mic_position // block) % self._n_times]
            t_ref = self.ref_times[(ref_position // block) % self._n_times]
            self.ref_offsets.append(t_mic - t_ref + (ref_position % block - mic_position % block) / self.rate)
        return ref

    # --- PortAudio callbacks: copies and int bumps only ---

    def _play_out(self, outdata: Any, frames: int) -> Any:
        out = outdata[:, 0]
        n = self.play.read_into(out)
        if n < frames:
            out[n:] = 0.0
            self.short_blocks += 1
        if self.gain != 1.0:
            out *= self.gain  # in place: no allocation in the callback
        return out

    def _clock_in(self, frames: int, now: float) -> None:
        if self.in_t0:
            self.in_samples += frames
        else:
            self.in_t0 = now
        self.in_t1 = now

    def _clock_out(self, frames: int, now: float, status: Any) -> None:
        if status and status.output_underflow:
            self.underflows += 1
        if self.out_t0:
            self.out_samples += frames
        else:
            self.out_t0 = now
        self.out_t1 = now

    def duplex_cb(self, indata: Any, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        self.callbacks += 1
        if status and status.input_overflow:
            self.overflows += 1
        now = time.monotonic()
        self._clock_in(frames, now)
        self._clock_out(frames, now, status)
        out = self._play_out(outdata, frames)
        if self.cap.space() >= frames and self.ref.space() >= frames:
            self.cap.write(indata[:, 0])
            self.ref.write(out)
        else:
            self.dropped_in += frames

    def input_cb(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        self.callbacks += 1
        now = time.monotonic()
        self.cap_times[(self.cap.written // self.block) % self._n_times] = now
        self._clock_in(frames, now)
        if status and status.input_overflow:
            self.overflows += 1
        if self.cap.write(indata[:, 0]) < frames:
            self.dropped_in += frames

    def output_cb(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        self.ref_times[(self.ref.written // self.block) % self._n_times] = now
        self._clock_out(frames, now, status)
        self.ref.write(self._play_out(outdata, frames))


# ALSA devices that are plugins in front of a sound server (PulseAudio, PipeWire) rather than hardware.
_SOUND_SERVER_PCMS = {"pulse", "default", "sysdefault", "pipewire", "jack"}


def _is_sound_server(d: DeviceInfo) -> bool:
    """True for PortAudio's ALSA devices that route to PulseAudio or PipeWire.

    One duplex stream on these runs far below real time: PortAudio's ALSA backend polls both
    plugin PCMs from one thread, and against PulseAudio 16 it delivered 1.4-1.8 s of capture per
    4 s (measured at 24 and 48 kHz), while separate input and output streams keep time exactly.
    The echo reference then comes through the output callback with a stable one-block offset,
    which AEC3's delay estimator absorbs.
    """
    return d.hostapi.upper().startswith("ALSA") and d.name.split(" ")[0].lower() in _SOUND_SERVER_PCMS


class AudioIO:
    """Mic in, speaker out, as 24 kHz float32 frames of 1920 samples, with echo handling.

    Args:
        config: devices, echo mode and buffer sizes.
        backend: the ``sounddevice`` module (default) or a fake with the same interface.
    """

    def __init__(self, config: AudioConfig | None = None, backend: Any = None) -> None:
        self.config = config or AudioConfig()
        self._backend = backend
        self.on_event: Callable[[AudioEvent], None] | None = None
        self._pipe: _Pipe | None = None
        self._streams: list[Any] = []
        self._mode = self.config.echo
        self._pending_mode: str | None = self.config.echo
        self._canceller: EchoCanceller | None = None
        self._monitor = EchoMonitor()
        self._echo_warned = False
        self._latency_ms = 0.0
        self._device_errors = 0
        self._underruns = 0
        self._dropped_out = 0
        self._base_overflows = self._base_dropped_in = 0
        self._in_db = self._out_db = SILENCE_DB
        self._short_seen = 0
        self._last_write = 0.0
        self._volume = 1.0
        self._running = threading.Event()
        self._stop = threading.Event()  # wakes the supervisor at once on stop() (no polling sleep)
        self._supervisor: threading.Thread | None = None
        self.devices: tuple[DeviceInfo, DeviceInfo] | None = None

    @property
    def backend(self) -> Any:
        if self._backend is None:
            self._backend = load_backend()
        return self._backend

    # --- lifecycle ---

    def start(self) -> None:
        """Open the devices and start audio; raises :class:`AudioDeviceError` with advice if it cannot."""
        if self._running.is_set():
            return
        self._open()
        self._stop.clear()
        self._running.set()
        self._supervisor = threading.Thread(target=self._supervise, name="ppx-audio-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self) -> None:
        self._running.clear()
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=5.0)
        self._supervisor = None
        self._close_streams()

    def close(self) -> None:
        self.stop()
        self._pipe = None

    def __enter__(self) -> AudioIO:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pick_rate(self, d_in: DeviceInfo, d_out: DeviceInfo) -> int:
        be = self.backend
        wanted = [self.config.samplerate] if self.config.samplerate else [
            RATE, int(d_out.default_samplerate), int(d_in.default_samplerate), 48000, 44100]
        for rate in wanted:
            try:
                be.check_input_settings(device=d_in.index, channels=1, dtype="float32", samplerate=rate)
                be.check_output_settings(device=d_out.index, channels=1, dtype="float32", samplerate=rate)
                return int(rate)
            except Exception:  # PortAudioError or ValueError, depending on the host API
                continue
        raise AudioDeviceError(
            f"'{d_in.name}' and '{d_out.name}' accept none of the sample rates {wanted}; "
            "choose other devices in the audio settings."
        )

    def _open(self) -> None:
        be = self.backend
        devices = list_devices(be)
        names = [d.name for d in devices]
        # A sound server's own device (soundserver.py) is opened through PortAudio's "pulse" device.
        in_spec, in_env = soundserver.route(self.config.input_device, "input", names)
        out_spec, out_env = soundserver.route(self.config.output_device, "output", names)
        d_in = resolve_device(in_spec, "input", devices)
        d_out = resolve_device(out_spec, "output", devices)
        with soundserver.environment({**in_env, **out_env}):
            self._open_streams(be, d_in, d_out)

    def _open_streams(self, be, d_in: DeviceInfo, d_out: DeviceInfo) -> None:
        rate = self._pick_rate(d_in, d_out)
        want_duplex = self.config.duplex if self.config.duplex is not None else (
            d_in.hostapi == d_out.hostapi and not (_is_sound_server(d_in) or _is_sound_server(d_out)))
        streams: list[Any] = []
        pipe = None
        common = dict(samplerate=rate, dtype="float32", latency=self.config.latency)
        if want_duplex:
            pipe = _Pipe(rate, True, self.config)
            try:
                streams = [be.Stream(device=(d_in.index, d_out.index), channels=(1, 1), blocksize=pipe.block,
                                     callback=pipe.duplex_cb, **common)]
            except Exception as e:  # some host APIs refuse duplex or this block size: use two streams
                log.info("duplex stream refused (%s); using separate input and output streams", e)
                streams, pipe = [], None
        if pipe is None:
            pipe = _Pipe(rate, False, self.config)
            try:
                streams = [
                    be.InputStream(device=d_in.index, channels=1, blocksize=pipe.block, callback=pipe.input_cb,
                                   **common),
                    be.OutputStream(device=d_out.index, channels=1, blocksize=pipe.block, callback=pipe.output_cb,
                                    **common),
                ]
            except Exception as e:
                for s in streams:
                    s.close()
                raise AudioDeviceError(
                    f"Cannot open '{d_in.name}' / '{d_out.name}' at {rate} Hz ({e}). Close other apps using "
                    "them, or pick other devices."
                ) from e
        try:
            for s in streams:
                s.start()
        except Exception as e:
            for s in streams:
                s.close()
            raise AudioDeviceError(f"Cannot start audio on '{d_in.name}' / '{d_out.name}' ({e}).") from e
        lat = [s.latency for s in streams]
        flat = [float(v) for x in lat for v in (x if isinstance(x, (tuple, list)) else (x,))]
        self._latency_ms = 1000.0 * sum(flat)
        self.devices = (d_in, d_out)
        self._short_seen = 0
        old = self._pipe
        if old is not None:  # keep the counters cumulative across reconnects
            self._base_overflows += old.overflows
            self._base_dropped_in += old.dropped_in
        pipe.gain = self._volume
        self._pipe, self._streams = pipe, streams
        self._pending_mode = self._mode  # rebuild the canceller: the echo path changed
        log.info("audio on %r / %r at %d Hz, %s, latency %.0f ms", d_in.name, d_out.name, rate,
                 "duplex" if pipe.duplex else "separate streams", self._latency_ms)

    def _close_streams(self) -> None:
        streams, self._streams = self._streams, []
        for s in streams:
            try:
                s.stop()
            except Exception:
                pass
            try:
                s.close()
            except Exception:
                pass

    # --- supervision (own thread) ---

    def _emit(self, kind: str, message: str) -> None:
        log.warning("audio: %s", message) if kind != "device_restored" else log.info("audio: %s", message)
        cb = self.on_event
        if cb is not None:
            try:
                cb(AudioEvent(kind, message))
            except Exception:
                log.exception("audio event handler failed")

    def _supervise(self) -> None:
        last_count, last_change = -1, time.monotonic()
        next_retry = 0.0
        while not self._stop.wait(0.1):
            now = time.monotonic()
            if not self._streams:
                if now < next_retry:
                    continue
                try:
                    rescan(self.backend)
                    self._open()
                except Exception as e:
                    log.debug("audio reopen failed: %s", e)
                    next_retry = now + self.config.retry_s
                    continue
                last_count, last_change = -1, now
                self._emit("device_restored", "Audio device available again; audio resumed.")
                continue
            pipe = self._pipe
            count = pipe.callbacks if pipe is not None else 0
            if count != last_count:
                last_count, last_change = count, now
            inactive = not all(getattr(s, "active", True) for s in self._streams)
            stalled = now - last_change > self.config.stall_timeout_s
            if inactive or stalled:
                self._device_errors += 1
                why = "the audio stream stopped" if inactive else f"no audio for {now - last_change:.1f} s"
                name = f"'{self.devices[0].name}' / '{self.devices[1].name}'" if self.devices else "the audio device"
                self._close_streams()
                self._emit("device_lost", f"Lost {name}: {why}. Reconnect it or pick another device; "
                                          "audio resumes by itself when a device is available.")
                next_retry = now + self.config.retry_s

    # --- caller side ---

    def _pull(self, pipe: _Pipe) -> tuple[np.ndarray, np.ndarray] | None:
        while len(pipe.cap_fifo) < FRAME and pipe.cap.available() >= pipe.block:
            mic_position = pipe.cap.read_position
            mic = pipe.cap.read(pipe.block)
            # Duplex: written in lockstep with the capture.
            ref = pipe.ref.read(pipe.block) if pipe.duplex else pipe.next_reference(mic_position)
            pipe.cap_fifo.push(pipe.in_rs.process(mic))
            pipe.ref_fifo.push(pipe.ref_rs.process(ref))
        mic = pipe.cap_fifo.pop()
        if mic is None:
            return None
        ref = pipe.ref_fifo.pop()
        return mic, (ref if ref is not None else np.zeros(FRAME, np.float32))

    def read_aligned(self, timeout: float | None = None) -> AlignedFrame | None:
        """Like :meth:`read_frame`, with the raw mic frame and the frame played at the same time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pipe = self._pipe
            got = self._pull(pipe) if pipe is not None else None
            if got is not None:
                return self._handle_echo(*got)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def read_frame(self, timeout: float | None = None) -> np.ndarray | None:
        """Next captured [1920] float32 frame at 24 kHz after echo handling; None on timeout."""
        got = self.read_aligned(timeout)
        return None if got is None else got.frame

    def _handle_echo(self, mic: np.ndarray, ref: np.ndarray) -> AlignedFrame:
        if self._pending_mode is not None:
            mode, self._pending_mode = self._pending_mode, None
            try:
                self._canceller = make_canceller(mode, int(self._latency_ms), self.config.noise_suppression)
            except RuntimeError as e:  # AEC library missing: fall back rather than lose the conversation
                log.warning("%s Falling back to half-duplex ducking.", e)
                self._canceller = make_canceller("duck", int(self._latency_ms))
            self._mode = self._canceller.mode
        self._in_db, self._out_db = level_db(mic), level_db(ref)
        out = self._canceller.process(mic, ref)
        if self._mode == "off" and self.config.monitor_echo and not self._echo_warned:
            found = self._monitor.push(mic, ref)
            if found is not None:
                self._echo_warned = True
                lag, _, gain_db = found
                self._emit("echo_detected", f"The agent's voice comes back in the microphone ({gain_db:.0f} dB, "
                                            f"{1000 * lag / RATE:.0f} ms late) while echo handling is off; use "
                                            "headphones or switch echo handling on.")
        return AlignedFrame(out, mic, ref)

    def write_frame(self, frame: np.ndarray) -> None:
        """Queue a [1920] float32 frame at 24 kHz for playback; when the queue is full the oldest audio goes."""
        x = np.asarray(frame, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"write_frame expects mono audio of shape [{FRAME}], got {tuple(x.shape)}")
        pipe = self._pipe
        if pipe is None:
            return
        now = time.monotonic()
        short = pipe.short_blocks
        if short > self._short_seen and pipe.play.available() == 0:
            if self._last_write and now - self._last_write < self.config.underrun_gap_s:
                self._underruns += 1
        self._short_seen = short
        self._last_write = now
        chunk = pipe.out_rs.process(x)
        if pipe.play.available() + chunk.shape[0] > pipe.play_limit:
            self._dropped_out += pipe.play.request_skip(pipe.play_limit - chunk.shape[0])
        # refused only when the callback has not run for a second of writes (stalled device)
        self._dropped_out += chunk.shape[0] - pipe.play.write(chunk)

    def clear_playback(self) -> None:
        """Drop all queued agent audio (barge-in, cancel)."""
        pipe = self._pipe
        if pipe is not None:
            pipe.play.request_skip(0)
            self._short_seen = pipe.short_blocks + 1  # the gap that follows is wanted, not an underrun

    def set_volume(self, volume: float) -> None:
        """Output volume from 0 (silent) to 1 (as generated); acts on audio already queued too."""
        self._volume = min(1.0, max(0.0, float(volume)))
        pipe = self._pipe
        if pipe is not None:
            pipe.gain = self._volume

    @property
    def volume(self) -> float:
        return self._volume

    def playing(self) -> bool:
        pipe = self._pipe
        return pipe is not None and pipe.play.available() > 0

    def set_echo_mode(self, mode: str) -> None:
        """Switch echo handling; takes effect at the next frame read."""
        if mode not in ECHO_MODES:
            raise ValueError(f"Unknown echo mode {mode!r}; choose one of: {', '.join(ECHO_MODES)}")
        self._echo_warned = False
        self._pending_mode = mode

    @property
    def echo_mode(self) -> str:
        return self._pending_mode or self._mode

    def reference_offset_ms(self) -> float:
        """How much later a captured block was handled than the played block paired with it as
        the echo reference (median of recent blocks): 0 for a duplex stream, where they are
        handled in the same callback; with separate streams, add it to the lag between the pair
        to get the round trip from playing a sound to capturing it."""
        pipe = self._pipe
        if pipe is None or pipe.duplex or not pipe.ref_offsets:
            return 0.0
        return 1000.0 * float(np.median(pipe.ref_offsets))

    @property
    def latency_ms(self) -> float:
        """Input + output latency PortAudio reports for the open stream(s)."""
        return self._latency_ms

    @property
    def stats(self) -> AudioStats:
        pipe = self._pipe
        return AudioStats(
            overruns=self._base_overflows + (pipe.overflows if pipe else 0),
            underruns=self._underruns,
            dropped_input=self._base_dropped_in + (pipe.dropped_in if pipe else 0),
            input_level_db=self._in_db,
            output_level_db=self._out_db,
            device_errors=self._device_errors,
            dropped_output=self._dropped_out,
            callbacks=pipe.callbacks if pipe else 0,
            samplerate=pipe.rate if pipe else 0,
            duplex=bool(pipe and pipe.duplex),
            latency_ms=self._latency_ms,
            echo_mode=self.echo_mode,
            connected=bool(self._streams),
            output_underflows=pipe.underflows if pipe else 0,
            captured_s=pipe.in_samples / pipe.rate if pipe else 0.0,
            capture_wall_s=pipe.in_t1 - pipe.in_t0 if pipe else 0.0,
            played_s=pipe.out_samples / pipe.rate if pipe else 0.0,
            playback_wall_s=pipe.out_t1 - pipe.out_t0 if pipe else 0.0,
        )
