"""Starting the desktop app: QApplication, theme, icon, audio, model choice, main window.

`run_app` is what `ppx-desktop` (no subcommand) and `python -m ppx_desktop` end in, through
the launcher. Which model opens: `--model-dir`, else `--demo`'s tiny model, else the folder the
user chose last time (or the demo, when that was their choice), else a verified download; with
none of them the setup dialog asks.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np

from ..paths import APP_NAME

log = logging.getLogger(__name__)

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SELF_TEST_TIMEOUT_S = 300


def app_icon():
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for size in ICON_SIZES:
        png = ICONS / f"ppx-desktop-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    svg = ICONS / "ppx-desktop.svg"
    if svg.is_file():
        icon.addFile(str(svg))  # Qt picks the crispest source for each device pixel ratio
    return icon


def ensure_application(argv: list[str] | None = None):
    """The QApplication (created once), named so QSettings and paths find the app's files."""
    from PySide6.QtCore import QCoreApplication, Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    QCoreApplication.setOrganizationName(APP_NAME)
    QCoreApplication.setApplicationName(APP_NAME)
    app = QApplication.instance()
    if app is None:
        # Fractional scale factors (150 %) render crisply instead of being rounded up to 200 %.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    # Also when the launcher's error dialog created the application first.
    app.setApplicationDisplayName("PersonaPlex")
    app.setDesktopFileName(APP_NAME)
    # Fusion draws the same on every OS and follows the system light/dark scheme (Qt >= 6.5).
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())
    return app


def make_audio(settings, test_input: np.ndarray | None = None, speed: float = 1.0, backend=None):
    """The AudioIO for the settings; with `test_input` (possibly empty) the test device replaces the
    sound card: it plays that audio as the microphone at `speed` times real time. `backend`: the
    sound card to use (the one already in use, when the settings change)."""
    from ..audio import AudioConfig, AudioIO
    from ..audio.testdevice import TestDevice

    if test_input is not None:
        backend = TestDevice(test_input, speed=speed)
    if isinstance(backend, TestDevice):
        # A virtual device cannot be unplugged: a long stall only means a starved machine, not a lost device.
        config = AudioConfig(echo="off", monitor_echo=False, stall_timeout_s=120.0)
    else:
        config = AudioConfig(input_device=settings.input_device or None,
                             output_device=settings.output_device or None, echo=settings.echo)
    audio = AudioIO(config, backend=backend)
    audio.set_volume(settings.volume)
    return audio


def create_window(store=None, audio=None, test_input: np.ndarray | None = None, speed: float = 1.0):
    """A main window with its bridge and audio (not yet loading a model)."""
    from ..audio.vad import VadConfig
    from .engine_bridge import EngineBridge
    from .main_window import MainWindow
    from .settings import load_settings

    settings = load_settings(store)
    if audio is None:
        audio = make_audio(settings, test_input, speed)
    bridge = EngineBridge(audio, VadConfig(end_silence_s=settings.vad_end_silence_s, threshold=settings.vad_threshold))
    bridge.set_end_of_turn(settings.end_of_turn)
    # New settings reopen the same sound card (the real one, or a test device) with new devices.
    window = MainWindow(bridge, store, audio_factory=lambda s: make_audio(s, backend=bridge.audio.backend))
    window.setWindowIcon(app_icon())
    return window


def gpu_verdict() -> tuple[str | None, str]:
    """(mode, first line) of the GPU check: the saved first-run report, else a fresh check."""
    import json

    from .. import gpucheck

    try:
        path = gpucheck.saved_report_path()
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return data.get("mode"), (data.get("verdict") or [""])[0]
        report = gpucheck.check_gpu()
        return report.mode, report.verdict[0]
    except Exception:  # the dialog works without it; the probe guards its own calls
        log.exception("GPU check for the setup dialog failed")
        return None, ""


def ask_for_model(window) -> tuple[Path | None, bool] | None:
    """The setup dialog: (model_dir, demo) as chosen, None if closed. The choice is remembered."""
    from .settings import save_settings
    from .setup_dialog import SetupDialog

    mode, summary = gpu_verdict()
    dialog = SetupDialog(window, gpu_mode=mode, gpu_summary=summary)
    if not dialog.exec():
        return None
    s = window.settings
    if dialog.choice == "demo":
        s.use_demo = True
    else:
        s.use_demo, s.model_dir = False, str(dialog.model_dir)
    save_settings(s, window.store)  # remembered now, not only when the window closes
    return (None, True) if dialog.choice == "demo" else (dialog.model_dir, False)


def choose_model(window, demo: bool, model_dir: str | None) -> tuple[Path | None, bool] | None:
    """(model_dir, demo) to load, asking with the setup dialog when nothing is found; None if the user quits."""
    from ..assets.hub import find_model_dir
    from .setup_dialog import missing_model_files

    if model_dir:
        return Path(model_dir), False
    if demo:
        return None, True
    remembered = window.settings.model_dir
    if remembered and not missing_model_files(Path(remembered)):
        return Path(remembered), False
    found = find_model_dir()
    if found is not None:
        return found, False
    if window.settings.use_demo:
        return None, True
    return ask_for_model(window)


def first_run_gpu_message(parent=None):
    """On the app's first start, a message box saying what this GPU will and will not run
    (gpucheck's report); None on later starts. A failing probe never blocks the start."""
    from PySide6.QtWidgets import QMessageBox

    from .. import gpucheck

    try:
        report = gpucheck.first_run_report()
    except Exception:  # pragma: no cover - the probe guards its own calls; this is the last line
        log.exception("first-run GPU check failed")
        return None
    if report is None:
        return None
    icon = QMessageBox.Icon.Information if report.available else QMessageBox.Icon.Warning
    box = QMessageBox(icon, "PersonaPlex: your GPU", report.verdict[0], QMessageBox.StandardButton.Ok, parent)
    box.setInformativeText("\n\n".join(report.verdict[1:]))
    box.setDetailedText(f"Saved in {gpucheck.saved_report_path()}; delete that file to run this check again.")
    log.info("first-run GPU check: %s", " | ".join(report.verdict))
    return box


def self_test_input(seconds: float = 1.5) -> np.ndarray:
    """A voiced, speech-like test signal (a gliding harmonic tone with syllable-rate bursts)."""
    t = np.arange(int(24_000 * seconds)) / 24_000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 24_000
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.15 * voice * envelope).astype(np.float32)


def _run_self_test(app, window) -> int:
    """One push-to-talk turn of the demo model through the test device; 0 when audio came back."""
    from PySide6.QtCore import QTimer

    from ..session.events import ErrorEvent, TurnFinished

    result = {"code": 1}

    def on_event(event) -> None:
        if isinstance(event, ErrorEvent):
            print(f"self-test: error: {event.message}", file=sys.stderr)
            app.exit(1)
        elif isinstance(event, TurnFinished):
            played = window.bridge.audio.backend.played_seconds()
            ok = event.steps > 0 and event.agent_audio_s > 0
            print(f"self-test: turn ended ({event.end}) after {event.steps} steps, {event.agent_audio_s:.2f} s "
                  f"of agent audio, {played:.2f} s played: {'ok' if ok else 'FAILED'}")
            result["code"] = 0 if ok else 1
            app.exit(result["code"])

    def talk() -> None:
        window.bridge.press()
        QTimer.singleShot(1200, window.bridge.release)

    def on_ready(event) -> None:
        from ..session.events import ConversationReady

        if isinstance(event, ConversationReady):
            window.bridge.event.disconnect(on_ready)
            talk()

    # Voice detection is not used by a push-to-talk turn: check that its model loads and runs
    # (a bundle without silero-vad's files would break hands-free mode only).
    from ..audio.resample import RATE, StreamResampler
    from ..audio.vad import VAD_RATE, WINDOW, SileroVad

    vad = SileroVad()
    x = StreamResampler(RATE, VAD_RATE).process(self_test_input())
    speech = max(vad.prob(x[i:i + WINDOW]) for i in range(0, x.shape[0] - WINDOW + 1, WINDOW))
    print(f"self-test: voice detection ({vad.backend}) runs, highest speech probability {speech:.2f}")

    window.bridge.event.connect(on_event)
    window.bridge.event.connect(on_ready)
    QTimer.singleShot(SELF_TEST_TIMEOUT_S * 1000, lambda: (print("self-test: timed out", file=sys.stderr),
                                                            app.exit(1)))
    window.load_model(None, demo=True)
    code = app.exec()
    window.close()
    return code


def run_app(demo: bool = False, model_dir: str | None = None, self_test: bool = False) -> int:
    """Opens the app and runs its event loop; returns the exit code."""
    if self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = ensure_application()
    if self_test:
        window = create_window(test_input=self_test_input())
        window.set_mode("ptt")
        return _run_self_test(app, window)
    window = create_window()
    message = first_run_gpu_message(window)
    if message is not None:
        message.exec()
    choice = choose_model(window, demo, model_dir)
    if choice is None:
        window.bridge.shutdown(timeout=1.0)
        return 0
    window.show()
    window.load_model(*choice)
    code = app.exec()
    _tear_down(window)
    return code


def _tear_down(window) -> None:
    """Deletes the window while the QApplication still exists, so Qt objects go in Qt's order
    and not in whatever order the interpreter's shutdown collects their Python wrappers."""
    from PySide6.QtCore import QCoreApplication, QEvent

    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
