"""What a real-time audio test lost to the machine, measured on its own streams.

On a loaded machine audio goes missing outside the code under test, and a correlation or timing
check then fails for the machine's sake. This measures, over one test's run, every place where
that can happen:

* the helpers: paplay / parecord (run with ``-v``) print "Stream underrun." / "Stream overrun."
  when they missed a deadline; an underrun inserts silence into the stimulus (measured: every
  correlation failure beside a CPU hog came with one);
* the sound server: its log (info level) reports the loopback's underruns and the samples it
  skipped or inserted;
* our own streams: PortAudio's overflow/underflow counters, captured samples dropped by our
  ring, and the audio delivered against the wall clock between the callbacks (``AudioStats``).

A test reads the audit before its assertions: when anything was lost it skips, saying what was
measured; otherwise the assertions hold strictly, so a fault in the code under test (a block
dropped or shifted, which none of these counters sees) still fails.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ppx_desktop.audio import AudioIO, AudioStats

# Callbacks come in bursts (two blocks at once is common): up to this much wall time without
# audio is scheduling jitter, not loss (measured: at most 31 ms beside a two-core CPU hog).
JITTER_S = 0.16
# The loopback adds silence or drops audio to hold its latency: at its start (before an audit
# begins) that is set-up, later it is audio lost or inserted.
SERVER_LOSS = re.compile(r"underrun detected|too many underruns|skipping or inserting samples|dropping \d+ usec"
                         r"|adding \d+ usec of silence", re.IGNORECASE)


@dataclass
class Helper:
    """A paplay/parecord process whose own underrun/overrun reports are counted."""

    name: str
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def terminate(self) -> None:
        self.proc.terminate()

    def losses(self) -> list[str]:
        self.proc.wait(20)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        found = []
        for what in ("underrun", "overrun"):
            n = text.count(f"Stream {what}.")
            if n:
                found.append(f"{self.name} reported {n} stream {what}(s)")
        return found


@dataclass
class _Watched:
    name: str
    io: AudioIO
    start: AudioStats
    end: AudioStats | None = None


@dataclass
class Audit:
    """Started after a test's streams are open (and delivered their first frame); `check()`
    before the assertions."""

    server_log: Path
    runtime: Path
    env: dict[str, str]
    helpers: list[Helper] = field(default_factory=list)
    streams: list[_Watched] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._log_start = self.server_log.stat().st_size if self.server_log.exists() else 0

    # --- what is watched ---
    def watch(self, io: AudioIO, name: str = "AudioIO") -> None:
        self.streams.append(_Watched(name, io, io.stats))

    def stop(self, io: AudioIO) -> None:
        """Reads the stream's counters before it is closed (closing resets them)."""
        for w in self.streams:
            if w.io is io and w.end is None:
                w.end = io.stats

    def watch_streams_opened(self, monkeypatch) -> None:
        """Watches every AudioIO started from now on (a command under test opens its own)."""
        start, close = AudioIO.start, AudioIO.close

        def watched_start(io: AudioIO) -> None:
            start(io)
            self.watch(io, "the command's AudioIO")

        def watched_close(io: AudioIO) -> None:
            self.stop(io)
            close(io)

        monkeypatch.setattr(AudioIO, "start", watched_start)
        monkeypatch.setattr(AudioIO, "close", watched_close)

    def _helper(self, name: str, args: list[str]) -> Helper:
        log = self.runtime / f"{name}-{len(self.helpers)}.log"
        with log.open("w") as err:
            proc = subprocess.Popen([name, "-v", *args], env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        helper = Helper(name, proc, log)
        self.helpers.append(helper)
        return helper

    # The helpers are stand-ins for a person and a recorder, not the code under test: a generous
    # buffer (200 ms; 20 ms underran beside a CPU hog 3 times in 6) keeps them out of the way.
    def paplay(self, wav: Path) -> Helper:
        return self._helper("paplay", ["--device=micfeed", "--latency-msec=200", str(wav)])

    def parecord(self, out: Path) -> Helper:
        return self._helper("parecord", ["--device=speaker.monitor", "--rate=24000", "--channels=1",
                                          "--format=float32le", "--raw", "--latency-msec=200", str(out)])

    # --- the verdict ---
    def losses(self) -> list[str]:
        found = [x for h in self.helpers for x in h.losses()]
        if self.server_log.exists():
            with self.server_log.open(errors="replace") as f:
                f.seek(self._log_start)
                lines = [ln.strip() for ln in f if SERVER_LOSS.search(ln)]
            if lines:
                found.append(f"the sound server reported {len(lines)} loss(es), e.g. {lines[0]!r}")
        for w in self.streams:
            found += _stream_losses(w)
        return found

    def check(self) -> None:
        """Skips the test, with the figures, if the machine lost any of its audio."""
        lost = self.losses()
        if lost:
            pytest.skip("audio was lost to the machine's load, so this run cannot judge the code: " + "; ".join(lost))


def _stream_losses(w: _Watched) -> list[str]:
    a, b = w.start, w.end if w.end is not None else w.io.stats
    found = []
    if not b.connected or b.device_errors > a.device_errors:
        return [f"{w.name}'s stream was lost and reopened"]
    for label, x, y in (("input overflow(s)", a.overruns, b.overruns),
                        ("output underflow(s)", a.output_underflows, b.output_underflows)):
        if y > x:
            found.append(f"{w.name}: {y - x} PortAudio {label}")
    if b.dropped_input > a.dropped_input:
        found.append(f"{w.name}: {b.dropped_input - a.dropped_input} captured samples dropped")
    for label, x, y in (("capture", a.capture_deficit_s, b.capture_deficit_s),
                        ("playback", a.playback_deficit_s, b.playback_deficit_s)):
        if y - x > JITTER_S:
            found.append(f"{w.name}: the {label} fell {1000 * (y - x):.0f} ms behind the wall clock")
    return found
