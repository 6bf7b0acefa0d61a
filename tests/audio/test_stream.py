"""AudioIO through the fake backend: framing, playback queue, counters, resampling, device loss."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from audio_fakes import FakeSoundDevice

from ppx_desktop.audio import FRAME, RATE, AudioConfig, AudioIO, level_db
from ppx_desktop.audio.devices import AudioDeviceError, resolve_device
from ppx_desktop.audio.ringbuffer import RingBuffer


def _ramp(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float64) / 2**20).astype(np.float32)  # exact in float32, unique per sample


def _io(sd: FakeSoundDevice, **kw) -> AudioIO:
    kw.setdefault("echo", "off")
    kw.setdefault("stall_timeout_s", 60.0)
    io = AudioIO(AudioConfig(**kw), backend=sd)
    io.start()
    return io


def test_ringbuffer_wraps_and_skips_exactly():
    rb = RingBuffer(5000)
    x = _ramp(12000)
    got, out = [], np.zeros(1920, np.float32)
    for i in range(0, 12000, 1500):
        assert rb.write(x[i : i + 1500]) == 1500
        n = rb.read_into(out)
        got.append(out[:n].copy())
    assert np.array_equal(np.concatenate(got), x)
    assert rb.write(np.ones(6000, np.float32)) == 5000  # full: the rest is refused, never overwritten
    assert rb.request_skip(keep=1000) == 4000 and rb.available() == 1000


def test_ringbuffer_threads_keep_every_sample_in_order():
    rb, n = RingBuffer(4096), 100_000
    x = _ramp(n)
    got = np.zeros(n, np.float32)

    def produce():
        i = 0
        while i < n:
            k = rb.write(x[i : i + 700])
            i += k
            if not k:
                time.sleep(0)  # let the consumer run instead of spinning on the GIL

    t = threading.Thread(target=produce)
    t.start()
    j, out = 0, np.zeros(1000, np.float32)
    while j < n:
        k = rb.read_into(out)
        got[j : j + k] = out[:k]
        j += k
        if not k:
            time.sleep(0)
    t.join()
    assert np.array_equal(got, x)  # no sample lost, duplicated or torn


def test_capture_frames_are_the_mic_signal_exactly():
    mic = _ramp(20 * FRAME)
    sd = FakeSoundDevice(mic=mic)
    with _io(sd) as io:
        sd.pump(20)
        frames = [io.read_frame(timeout=0) for _ in range(20)]
        assert io.read_frame(timeout=0.01) is None
        st = io.stats
    assert all(f.shape == (FRAME,) and f.dtype == np.float32 for f in frames)
    assert np.array_equal(np.concatenate(frames), mic)
    assert st.duplex and st.samplerate == RATE and st.dropped_input == 0 and st.overruns == 0


def test_played_frames_reach_the_speaker_and_are_the_echo_reference():
    sd = FakeSoundDevice()
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(10 * FRAME) / RATE)).astype(np.float32)
    with _io(sd) as io:
        for i in range(10):
            io.write_frame(x[i * FRAME : (i + 1) * FRAME])
        assert io.playing()
        sd.pump(12)
        assert not io.playing()
        refs = [io.read_aligned(timeout=0).played for _ in range(12)]
    assert np.array_equal(sd.speaker[: 10 * FRAME], x)
    assert np.array_equal(np.concatenate(refs)[: 10 * FRAME], x)
    assert level_db(sd.speaker[10 * FRAME : 12 * FRAME]) == -120.0  # underrun plays silence


def test_output_volume_acts_at_once_on_queued_audio_and_the_echo_reference():
    sd = FakeSoundDevice()
    with _io(sd) as io:
        for _ in range(4):
            io.write_frame(np.full(FRAME, 0.5, np.float32))
        sd.pump(1)
        io.set_volume(0.25)  # the rest of what is queued is quieter already
        sd.pump(1)
        io.set_volume(0.0)  # muted speaker
        sd.pump(2)
        refs = [io.read_aligned(timeout=0).played for _ in range(4)]
    assert np.allclose(sd.speaker[:FRAME], 0.5) and np.allclose(sd.speaker[FRAME:2 * FRAME], 0.125)
    assert np.all(sd.speaker[2 * FRAME:4 * FRAME] == 0)
    assert np.allclose(refs[1], 0.125)  # echo handling hears what was really played


def test_full_playback_queue_drops_the_oldest_frames():
    sd = FakeSoundDevice()
    with _io(sd, playback_seconds=5 * FRAME / RATE) as io:
        for k in range(8):
            io.write_frame(np.full(FRAME, k / 10, np.float32))
        sd.pump(8)
        st = io.stats
    played = sd.speaker[: 8 * FRAME : FRAME]
    assert np.allclose(played[:5], [0.3, 0.4, 0.5, 0.6, 0.7]) and np.all(played[5:] == 0)
    assert st.dropped_output == 3 * FRAME


def test_clear_playback_silences_the_queue_at_once():
    sd = FakeSoundDevice()
    with _io(sd) as io:
        for _ in range(6):
            io.write_frame(np.full(FRAME, 0.5, np.float32))
        sd.pump(1)
        io.clear_playback()
        assert not io.playing()
        sd.pump(3)
    assert level_db(sd.speaker[:FRAME]) == pytest.approx(20 * np.log10(0.5), abs=1e-4)
    assert level_db(sd.speaker[FRAME : 4 * FRAME]) == -120.0


@pytest.mark.parametrize(
    ("gap_s", "expected"), [pytest.param(10.0, 1, id="late-frame"), pytest.param(0.0, 0, id="pause")]
)
def test_underruns_count_gaps_inside_agent_audio(gap_s, expected):
    sd = FakeSoundDevice()
    with _io(sd, underrun_gap_s=gap_s) as io:
        io.write_frame(np.full(FRAME, 0.1, np.float32))
        sd.pump(2)  # the second block finds the queue empty
        io.write_frame(np.full(FRAME, 0.1, np.float32))
        sd.pump(1)
        assert io.stats.underruns == expected


def test_unread_capture_is_dropped_and_counted():
    sd = FakeSoundDevice(mic=_ramp(40 * FRAME))
    with _io(sd, capture_seconds=10 * FRAME / RATE) as io:
        sd.pump(25)
        st = io.stats
        first = io.read_frame(timeout=0)
    assert st.dropped_input == 15 * FRAME
    assert np.array_equal(first, _ramp(FRAME))  # the oldest audio is kept, the newest refused


def _tone_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.shape[0])))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / x.shape[0]


def test_device_refusing_24k_is_resampled_both_ways():
    rate = 48000
    t = np.arange(int(3 * rate)) / rate
    sd = FakeSoundDevice(mic=(0.25 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rates=(rate,))
    with _io(sd) as io:
        tone = (0.25 * np.sin(2 * np.pi * 700 * np.arange(30 * FRAME) / RATE)).astype(np.float32)
        for i in range(30):
            io.write_frame(tone[i * FRAME : (i + 1) * FRAME])
        frames = []
        for _ in range(34):
            sd.pump(1)
            frames.append(io.read_frame(timeout=0))
        frames = [f for f in frames if f is not None]  # the resampler's filter delay holds back one frame
        assert io.stats.samplerate == rate and io.stats.duplex
    cap = np.concatenate(frames)[RATE // 4 :]
    assert _tone_hz(cap, RATE) == pytest.approx(1000.0, abs=0.5)
    assert level_db(cap) == pytest.approx(level_db(np.float32(0.25) * np.sin(np.linspace(0, 200 * np.pi, 48000))),
                                          abs=0.05)
    out = sd.speaker[rate // 4 : int(2.2 * rate)]
    assert _tone_hz(out, rate) == pytest.approx(700.0, abs=0.5)
    assert level_db(out) == pytest.approx(level_db(tone), abs=0.05)


def test_separate_streams_when_duplex_is_refused():
    sd = FakeSoundDevice(mic=_ramp(10 * FRAME), duplex_ok=False)
    with _io(sd) as io:
        sd.pump(10)
        frames = [io.read_frame(timeout=0) for _ in range(10)]
        assert not io.stats.duplex
    assert np.array_equal(np.concatenate(frames), _ramp(10 * FRAME))


def test_missing_device_is_a_clear_error():
    sd = FakeSoundDevice()
    sd.unplug()
    with pytest.raises(AudioDeviceError, match="No audio input device found"):
        AudioIO(AudioConfig(), backend=sd).start()
    with pytest.raises(AudioDeviceError, match="choose one of: 0: Fake Mic"):
        resolve_device("usb headset", "input", __import__("ppx_desktop.audio").audio.list_devices(FakeSoundDevice()))


def test_unplugged_device_is_reported_and_audio_resumes():
    sd = FakeSoundDevice(mic=np.full(RATE * 60, 0.1, np.float32))
    events: list[tuple[str, float]] = []
    lost, restored = threading.Event(), threading.Event()

    def on_event(e):
        events.append((e.kind, time.monotonic(), e.message))
        (lost if e.kind == "device_lost" else restored).set()

    # A long stall timeout: a loaded CI machine can starve the fake clock for seconds, which must not
    # count as a lost device here; the unplug has to be noticed through the stopped stream instead.
    io = AudioIO(AudioConfig(echo="off", stall_timeout_s=30.0, retry_s=0.1), backend=sd)
    io.on_event = on_event
    io.start()
    sd.start_clock(speed=4.0)
    try:
        assert io.read_frame(timeout=10.0) is not None
        t_unplug = time.monotonic()
        sd.unplug()
        assert lost.wait(20.0)
        assert io.read_frame(timeout=0.3) is None or io.stats.connected is False
        sd.plug()
        assert restored.wait(20.0)
        got = io.read_frame(timeout=10.0)
    finally:
        sd.stop_clock()
        io.close()
    assert got is not None and level_db(got) == pytest.approx(-20.0, abs=0.01)
    assert [k for k, _, _ in events] == ["device_lost", "device_restored"]
    # Reported at the supervisor's next 0.1 s check because the stream stopped, not after the stall
    # timeout; wall time is only bounded loosely (a busy CI machine stalls threads for seconds).
    assert "the audio stream stopped" in events[0][2]
    assert events[0][1] - t_unplug < io.config.stall_timeout_s
    assert io.stats.device_errors == 1


def test_no_nanobind_leak_report_at_exit_for_a_resampler_a_thread_still_holds():
    """A daemon thread (the inference worker, a voice maker) still holding a soxr stream when the
    process ends made nanobind print "leaked 2 instances of CSoxr" per test worker."""
    import subprocess
    import sys

    code = ("import threading, time\n"
            "from ppx_desktop.audio.resample import StreamResampler\n"
            "def hold():\n"
            "    r = StreamResampler(48000, 24000)\n"
            "    time.sleep(100)\n"
            "threading.Thread(target=hold, daemon=True).start()\n"
            "time.sleep(0.2)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "leaked" not in run.stderr, run.stderr
