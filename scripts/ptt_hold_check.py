"""Acceptance check: holding the space bar for 3 s with X key auto-repeat on, on a busy machine,
is exactly one push-to-talk turn.

Runs the real app (``python -m ppx_desktop --demo``) the way a user meets it: an X server (Xvfb)
with a window manager (openbox), key auto-repeat on (``xset r on``), a private PulseAudio server
whose virtual microphone hears a spoken question, and a CPU hog on every core. xdotool holds the
space bar down for 3 s and lets go; the app's autosaved transcript then must hold one user turn.

    .venv/bin/python scripts/ptt_hold_check.py [--seconds 3] [--no-hog] [--keep DIR]

Prints what it saw as JSON and exits 0 when there was exactly one user turn. Needs xvfb, openbox,
xdotool, x11-xserver-utils (xset), pulseaudio, pulseaudio-utils and libasound2-plugins. Nothing
touches the user's own display, sound server or data: all of it lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "audio" / "data" / "near_speech.wav"
TOOLS = ("Xvfb", "openbox", "xdotool", "xset", "xprop", "pulseaudio", "pactl", "paplay")


class Session:
    """The processes of one run; `close` ends every one of them (and only them)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ)
        for key in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "PULSE_LATENCY_MSEC"):
            self.env.pop(key, None)

    def spawn(self, args: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=self.env, stdout=kw.pop("stdout", subprocess.DEVNULL),
                                stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], check: bool = True) -> str:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=30, check=check).stdout

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_for(predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # polling external processes: they have no readiness signal
    raise SystemExit(f"ptt-hold-check: timed out waiting for {what}")


def free_display() -> str:
    n = 90
    while Path(f"/tmp/.X11-unix/X{n}").exists() or Path(f"/tmp/.X{n}-lock").exists():
        n += 1
    return f":{n}"


def start_x(s: Session) -> None:
    display = free_display()
    s.spawn(["Xvfb", display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
    wait_for(lambda: Path(f"/tmp/.X11-unix/X{display[1:]}").exists(), "Xvfb", 20)
    s.env["DISPLAY"] = display
    s.spawn(["openbox"])
    # A window manager announces itself on the root window.
    wait_for(lambda: "window id" in s.run(["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"], check=False),
             "openbox", 20)
    # X's defaults: auto-repeat on, 660 ms delay, 25 repeats a second (what a desktop does).
    s.run(["xset", "r", "on"])
    s.run(["xset", "r", "rate", "660", "25"])


def start_pulse(s: Session) -> None:
    runtime = s.home / "pulse-runtime"
    runtime.mkdir(mode=0o700)
    sock = runtime / "native"
    config = runtime / "session.pa"
    config.write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={sock}\n"
        "load-module module-null-sink sink_name=speaker rate=48000 channels=2 norewinds=1\n"
        "load-module module-null-sink sink_name=micfeed rate=48000 channels=1 norewinds=1\n"
        "load-module module-remap-source source_name=virtmic master=micfeed.monitor channels=1\n"
        "set-default-sink speaker\nset-default-source virtmic\n")
    s.env.update(XDG_RUNTIME_DIR=str(runtime), PULSE_SERVER=f"unix:{sock}")
    s.spawn(["pulseaudio", "--daemonize=no", "-n", "--no-cpu-limit=true", "--exit-idle-time=-1",
             "--disallow-exit", "-F", str(config)])
    wait_for(lambda: subprocess.run(["pactl", "info"], env=s.env, capture_output=True).returncode == 0,
             "PulseAudio", 30)


def start_hog(s: Session) -> int:
    cores = os.cpu_count() or 2
    for _ in range(cores):
        s.spawn([sys.executable, "-c", "while True:\n    pass"])
    return cores


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def user_turns(home: Path) -> tuple[list[dict], Path | None]:
    found = sorted((home / "data" / "conversations").glob("autosave_*/transcript.json"))
    if not found:
        return [], None
    data = json.loads(found[-1].read_text(encoding="utf-8"))
    return data["turns"], found[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the space bar is held")
    parser.add_argument("--no-hog", action="store_true", help="do not load the CPUs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for start-up and the answer")
    parser.add_argument("--keep", help="keep the run's folder (logs, transcript) here")
    args = parser.parse_args()
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"ptt-hold-check: needs {', '.join(missing)} (apt-get install xvfb openbox xdotool "
              "x11-xserver-utils pulseaudio pulseaudio-utils libasound2-plugins)", file=sys.stderr)
        return 2
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ppx-ptt-check-"))
    home.mkdir(parents=True, exist_ok=True)
    s = Session(home)
    s.env["PPX_DESKTOP_HOME"] = str(home / "data")
    s.env["PYTHONPATH"] = str(ROOT) + os.pathsep + s.env.get("PYTHONPATH", "")
    result: dict = {"held_s": args.seconds}
    try:
        start_x(s)
        start_pulse(s)
        # The first-run GPU message is a modal box; this check is about the main window, so the
        # GPU check runs (for real) before the app starts, as on any later start.
        s.run([sys.executable, "-c", "from ppx_desktop import gpucheck; gpucheck.first_run_report()"])
        app_log = (home / "app-stderr.log").open("w")
        app = s.spawn([sys.executable, "-m", "ppx_desktop", "--demo"], stderr=app_log, cwd=str(ROOT))
        log = home / "data" / "logs" / "ppx-desktop.log"
        wait_for(lambda: log.exists() and "conversation ready" in log.read_text(errors="replace"),
                 "the demo model to be ready", args.timeout)
        window = wait_for(lambda: s.run(["xdotool", "search", "--name", "^PersonaPlex$"], check=False).split(),
                          "the main window", 60)[0]
        s.run(["xdotool", "windowactivate", "--sync", window])
        result["hog_processes"] = 0 if args.no_hog else start_hog(s)
        time.sleep(3.0)  # let the hog take the cores before the hold starts
        busy0, total0 = cpu_times()
        s.spawn(["paplay", "--device=micfeed", str(SPEECH)])  # the user speaks while holding the key
        s.run(["xdotool", "keydown", "space"])
        time.sleep(args.seconds)  # the hold itself (X repeats the key meanwhile)
        s.run(["xdotool", "keyup", "space"])
        busy1, total1 = cpu_times()
        result["cpu_busy_during_hold"] = round((busy1 - busy0) / max(1, total1 - total0), 3)
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
        wait_for(lambda: any(e["speaker"] == "agent" and e["end"] for e in user_turns(home)[0]),
                 "the answer and its autosave", args.timeout)
        s.run(["xdotool", "windowactivate", "--sync", window], check=False)
        s.run(["xdotool", "key", "ctrl+q"], check=False)
        app.wait(120)
        app_log.close()
        entries, path = user_turns(home)
        result["transcript"] = str(path)
        result["user_turns"] = sum(e["speaker"] == "user" for e in entries)
        result["agent_turns"] = sum(e["speaker"] == "agent" for e in entries)
        result["user_seconds"] = [e["duration_s"] for e in entries if e["speaker"] == "user"]
        result["exit_code"] = app.returncode
        stderr = (home / "app-stderr.log").read_text(errors="replace")
        result["qt_warnings"] = [line for line in stderr.splitlines() if "QObject" in line or "qt." in line]
    finally:
        s.close()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0 if result.get("user_turns") == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
