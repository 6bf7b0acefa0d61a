"""A private PulseAudio server for the audio integration tier, started and stopped by the tests.

Null sinks with ``norewinds=1`` (without it a 24 kHz duplex stream fails and the monitor loses the
start of each playback): ``speaker`` is what the app plays into, ``micfeed`` + ``virtmic`` is the
app's microphone. Its own runtime folder and socket under a temp dir, so it never meets a user's
sound server or another test run. PortAudio reaches it through ALSA's ``pulse`` plugin.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from audio_audit import Audit

DATA = Path(__file__).parent / "data"
TOOLS = ("pulseaudio", "pactl", "paplay", "parecord")


def _missing() -> str | None:
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if ctypes.util.find_library("portaudio") is None:
        absent.append("libportaudio2")
    if absent:
        return (f"audio integration tier needs {', '.join(absent)}: sudo apt-get install libportaudio2 pulseaudio "
                "pulseaudio-utils libasound2-plugins espeak-ng sox")
    return None


MIN_REAL_TIME = 0.9  # measured 0.98 on an idle 2-core machine, 0.6 on an overloaded one


def _capture_speed(seconds: float = 3.0) -> float:
    """Audio captured per second of wall time from the virtual mic (1.0: real time), after the
    first frame (which can take up to 1.7 s to arrive)."""
    from ppx_desktop.audio import FRAME, RATE, AudioConfig, AudioIO

    with AudioIO(AudioConfig(echo="off", monitor_echo=False)) as io:
        if io.read_frame(timeout=10.0) is None:
            return 0.0
        frames, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            if io.read_frame(timeout=1.0) is not None:
                frames += 1
        return frames * FRAME / RATE / (time.monotonic() - t0)


class Pulse:
    def __init__(self, runtime: Path, env: dict[str, str]) -> None:
        self.runtime, self.env = runtime, env

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, check=True, capture_output=True, text=True,
                              timeout=20).stdout.strip()

    def audit(self, *streams) -> Audit:
        """Starts measuring what the machine loses of a test's audio (tests/audio/audio_audit.py)."""
        audit = Audit(self.runtime / "pa.log", self.runtime, self.env)
        for io in streams:
            audit.watch(io)
        return audit
    def paplay(self, wav: Path) -> subprocess.Popen:
        return subprocess.Popen(["paplay", "--device=micfeed", "--latency-msec=20", str(wav)], env=self.env)

    def parecord(self, out: Path, source: str = "speaker.monitor") -> subprocess.Popen:
        return subprocess.Popen(["parecord", f"--device={source}", "--rate=24000", "--channels=1",
                                 "--format=float32le", "--raw", "--latency-msec=20", str(out)], env=self.env)


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    runtime = tmp_path_factory.mktemp("pulse")
    runtime.chmod(0o700)
    sock = runtime / "pulse" / "native"
    (runtime / "ci.pa").write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={sock}\n"
        "load-module module-null-sink sink_name=speaker rate=48000 channels=2 norewinds=1\n"
        "load-module module-null-sink sink_name=micfeed rate=48000 channels=1 norewinds=1\n"
        "load-module module-remap-source source_name=virtmic master=micfeed.monitor channels=1\n"
        "set-default-sink speaker\nset-default-source virtmic\n"
    )
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER", "PULSE_LATENCY_MSEC")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ["PULSE_SERVER"] = f"unix:{sock}"
    os.environ.pop("PULSE_LATENCY_MSEC", None)  # hangs PortAudio's ALSA pulse device at 100% CPU
    env = dict(os.environ)
    # --no-cpu-limit: on a busy 2-core CI machine the daemon's own watchdog killed it (SIGXCPU)
    # in the middle of a test; the streams then died with "Connection terminated".
    proc = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", "--no-cpu-limit=true", "--exit-idle-time=-1", "--disallow-exit",
         "-F", str(runtime / "ci.pa"), "--log-level=info",  # info: the loopback's underruns (audio_audit.py)
         f"--log-target=file:{runtime / 'pa.log'}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (runtime / "pa.log").read_text() if (runtime / "pa.log").exists() else ""
                pytest.fail(f"PulseAudio did not start: {log[-2000:]}")
            time.sleep(0.05)
        import sounddevice as sd

        sd._terminate()  # PortAudio enumerated devices at import, before this server existed
        sd._initialize()
        rate = _capture_speed()
        if rate < MIN_REAL_TIME:
            # Nothing the app does can pass these timing and correlation checks on such a machine.
            pytest.skip(f"this machine captures audio at {rate:.0%} of real time through PulseAudio "
                        f"(needs {MIN_REAL_TIME:.0%}): too loaded for the real-time audio tier")
        yield Pulse(runtime, env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
