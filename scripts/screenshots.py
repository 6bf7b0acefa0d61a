"""Screenshots for the docs: the main window in each mode and at 800 x 500, the setup and settings dialogs.

Runs the real app on the tiny demo model with the test audio device (no GPU, no sound card),
holds one push-to-talk turn so the transcript has content, then grabs each view as a PNG:

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]

It needs an X server for real window decorations and fonts: with no DISPLAY it starts Xvfb
itself (apt-get install xvfb libxcb-icccm4 libxcb-keysyms1), falling back to offscreen rendering.
Settings and the demo model go to a temporary folder, never the user's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_display() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if shutil.which("Xvfb") is None:
        print("Xvfb not found: rendering offscreen", file=sys.stderr)
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        return None
    display = ":97"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = Path(f"/tmp/.X11-unix/X{display[1:]}")
    deadline = time.monotonic() + 10
    while not lock.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # Xvfb has no readiness signal but its socket
    os.environ["DISPLAY"] = display
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for loading and one turn")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xvfb = start_display()
    home = Path(tempfile.mkdtemp(prefix="ppx-shots-"))
    os.environ["PPX_DESKTOP_HOME"] = str(home / "data")
    try:
        return shoot(out, home, args.timeout)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
        shutil.rmtree(home, ignore_errors=True)


def shoot(out: Path, home: Path, timeout: float) -> int:
    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from ppx_desktop.session import events as ev
    from ppx_desktop.ui.app import create_window, ensure_application, gpu_verdict, self_test_input
    from ppx_desktop.ui.setup_dialog import SetupDialog

    app = ensure_application()
    store = QSettings(str(home / "settings.ini"), QSettings.Format.IniFormat)
    window = create_window(store, test_input=np.zeros(0, np.float32))
    window.resize(1040, 700)
    window.show()
    seen: list[object] = []
    window.bridge.event.connect(seen.append)

    def report(event) -> None:
        if isinstance(event, (ev.Status, ev.ErrorEvent)):
            print(f"screenshots: {event}", flush=True)
        if isinstance(event, ev.ErrorEvent):
            raise SystemExit(f"screenshots: the app reported an error: {event.message}")

    window.bridge.event.connect(report)

    def wait(predicate, what: str, limit: float = timeout) -> None:
        deadline = time.monotonic() + limit
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"screenshots: timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    def grab(widget, name: str) -> None:
        app.processEvents()
        path = out / f"{name}.png"
        widget.grab().save(str(path), "PNG", 9)
        print(f"{path} ({path.stat().st_size // 1024} KB)")

    window.load_model(None, demo=True)
    wait(lambda: window.model_ready, "the demo model")
    window.length.set_value(75, False)
    # One push-to-talk turn, so the transcript shows both sides.
    device = window.bridge.audio.backend
    device.say(self_test_input(1.6))
    window.space(True)
    start = window.bridge.controller.frames_captured
    wait(lambda: window.bridge.controller.frames_captured >= start + 18, "the spoken input")
    window.space(False)
    wait(lambda: any(isinstance(e, ev.TurnFinished) for e in seen), "the answer")
    wait(lambda: window.talk.word == "ready", "the end of playback", 60)
    grab(window, "main-push-to-talk")
    window.resize(800, 500)  # the smallest window the layout is made for
    wait(lambda: window.width() <= 800 and window.height() <= 500, "the narrow window", 10)
    for _ in range(5):
        app.processEvents()
    grab(window, "main-narrow")
    window.resize(1040, 700)
    wait(lambda: window.width() >= 1040, "the window to grow back", 10)

    window.modes.set_mode("handsfree")
    window.toggle_listening()
    wait(lambda: window.talk.word == "listening", "hands-free listening", 30)
    grab(window, "main-hands-free")
    window.toggle_listening()

    window.modes.set_mode("duplex")
    device.say(self_test_input(3.0))
    window.toggle_listening()
    wait(lambda: window.worker_state == "duplex", "live duplex", 60)
    n = window.bridge.controller.frames_captured
    wait(lambda: window.bridge.controller.frames_captured > n + 20, "some live audio", 60)
    grab(window, "main-live-duplex")
    window.toggle_listening()
    wait(lambda: window.talk.word == "stopped", "duplex to stop", 30)

    mode, summary = gpu_verdict()  # as the app shows it on this machine
    setup = SetupDialog(window, gpu_mode=mode, gpu_summary=summary)
    setup.show()
    setup._on_progress(6_300_000_000, 16_700_000_000, 48_000_000.0, 217.0)  # how a running download looks
    setup.download_button.setEnabled(False)
    setup.cancel_button.setEnabled(True)
    wait(lambda: setup.height() >= setup.minimumSizeHint().height(), "the setup dialog's layout", 10)
    grab(setup, "setup-dialog")
    setup.close()

    dialog = window.settings_dialog()
    dialog.show()
    dialog.test_button.click()  # the microphone test, hearing the test device's speech
    device.say(self_test_input(2.0))
    wait(lambda: dialog.mic_level.value() > 300, "the microphone test's level", 30)
    wait(lambda: dialog.height() >= dialog.minimumSizeHint().height(), "the settings dialog's layout", 10)
    grab(dialog, "settings-dialog")
    dialog.close()
    window.close()
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
