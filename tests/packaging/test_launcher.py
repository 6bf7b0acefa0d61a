"""Launching without a console: logging to the user's data folder and errors shown in a dialog."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

import pytest

from ppx_desktop import launcher, logs, paths
from ppx_desktop.cli import build_parser


def app_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.fixture
def restore_logging_and_hooks():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


@pytest.fixture
def shown():
    """Stands in for the error dialog (a modal box would wait for a click forever in a test)."""
    calls: list[tuple[str, str, str, bool]] = []

    def show(title, message, details):
        calls.append((title, message, details, threading.current_thread() is threading.main_thread()))

    show.calls = calls
    return show


def test_logging_goes_to_a_file_in_the_data_folder(restore_logging_and_hooks):
    path = logs.setup_logging(console=False)
    logs.setup_logging(console=False)  # a second setup must not double every line
    assert path == paths.log_dir() / "ppx-desktop.log"
    assert path.parent.parent == paths.data_dir()
    logging.getLogger("ppx_desktop.test").info("hello from the test")
    logging.getLogger("some.library").info("library chatter")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text(encoding="utf-8")
    assert text.count("hello from the test") == 1
    assert "library chatter" not in text


def test_error_in_the_gui_thread_is_logged_and_shown(restore_logging_and_hooks, shown):
    log_path = logs.setup_logging(console=False)
    reporter = launcher.ErrorReporter(log_path, shown)
    reporter.install()
    try:
        raise RuntimeError("the engine exploded")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    reporter.uninstall()
    (title, message, details, in_main), = shown.calls
    assert "RuntimeError: the engine exploded" in message and str(log_path) in message
    assert "Traceback" in details and in_main
    assert "the engine exploded" in log_path.read_text(encoding="utf-8")


def test_error_in_a_worker_thread_reaches_the_gui_thread(restore_logging_and_hooks, shown, qtbot):
    log_path = logs.setup_logging(console=False)
    reporter = launcher.ErrorReporter(log_path, shown)
    reporter.install()

    def work():
        raise ValueError("worker failed")

    thread = threading.Thread(target=work, name="engine-worker")
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: bool(shown.calls), timeout=5000)
    reporter.uninstall()
    (_, message, _, in_main), = shown.calls
    assert "ValueError: worker failed" in message
    assert in_main, "Qt widgets may only be touched from the GUI thread"
    text = log_path.read_text(encoding="utf-8")
    assert "uncaught exception in thread engine-worker" in text and "worker failed" in text


def test_launch_reports_a_failing_app_and_returns_1(restore_logging_and_hooks, shown, monkeypatch):
    app = pytest.importorskip("ppx_desktop.ui.app", reason="the GUI package is not there yet")

    def broken_run_app(**kwargs):
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(app, "run_app", broken_run_app)
    hook_before = sys.excepthook
    assert launcher.launch(app_args("--demo"), show=shown) == 1
    (_, message, _, _), = shown.calls
    assert "OSError: PortAudio library not found" in message
    assert sys.excepthook is hook_before


def test_launch_passes_the_app_options(restore_logging_and_hooks, monkeypatch):
    app = pytest.importorskip("ppx_desktop.ui.app", reason="the GUI package is not there yet")
    seen = {}
    monkeypatch.setattr(app, "run_app", lambda **kw: seen.update(kw) or 0)
    assert launcher.launch(app_args("--model-dir", "/models/pp", "--self-test")) == 0
    assert seen == {"demo": False, "model_dir": "/models/pp", "self_test": True}


def test_desktop_entry_options(restore_logging_and_hooks, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert launcher.launch(app_args("--install-desktop-entry")) == 0
    out = capsys.readouterr().out
    desktop = tmp_path / "share" / "applications" / "ppx-desktop.desktop"
    assert f"wrote {desktop}" in out and desktop.exists()
    assert launcher.launch(app_args("--uninstall-desktop-entry")) == 0
    assert f"removed {desktop}" in capsys.readouterr().out
    assert launcher.launch(app_args("--install-desktop-entry", "--uninstall-desktop-entry")) == 2


@pytest.mark.parametrize("env,self_test,expected", [
    pytest.param({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, False, False, id="offscreen"),
    pytest.param({"DISPLAY": ":0"}, True, False, id="self-test"),
    pytest.param({"DISPLAY": ":0"}, False, True, id="x11"),
    pytest.param({"WAYLAND_DISPLAY": "wayland-0"}, False, True, id="wayland"),
])
def test_dialogs_only_where_someone_can_close_them(monkeypatch, env, self_test, expected):
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", "linux")
    assert launcher.dialogs_possible(self_test) is expected


def test_a_missing_qt_xcb_library_is_named_with_its_package(restore_logging_and_hooks, monkeypatch, capsys):
    from ppx_desktop.ui import qtdeps

    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(qtdeps, "_loads", lambda soname: soname not in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1"))
    started = []
    monkeypatch.setattr("ppx_desktop.ui.app.run_app", lambda **kw: started.append(kw) or 0)
    assert launcher.launch(app_args()) == 1 and started == []
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4 (package libxcb-icccm4)" in err and "libxcb-keysyms.so.1 (package libxcb-keysyms1)" in err
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err
    assert "xcb-cursor" not in err  # only what is really missing


def test_every_library_of_qts_xcb_plugin_is_checked():
    # The table must cover what PySide6's plugin links against (read from the ELF files here).
    import shutil
    import subprocess
    from pathlib import Path

    import PySide6

    from ppx_desktop.ui import qtdeps

    if shutil.which("readelf") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs readelf on Linux")
    qt = Path(PySide6.__file__).parent / "Qt"
    needed = set()
    for lib in [qt / "plugins" / "platforms" / "libqxcb.so", *qt.glob("lib/libQt6XcbQpa.so*")]:
        out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
        needed |= {line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line}
    x11 = {n for n in needed if n.startswith(("libxcb", "libX11", "libxkbcommon"))}
    assert x11 <= set(qtdeps.XCB_LIBRARIES), x11 - set(qtdeps.XCB_LIBRARIES)
    assert qtdeps.missing_xcb_libraries() == []  # and this machine has them all


def test_ci_installs_every_qt_library_package():
    import re
    from pathlib import Path

    from ppx_desktop.ui import qtdeps

    ci = set(re.findall(r"[a-z0-9][a-z0-9.+-]*", (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [p for p in qtdeps.XCB_LIBRARIES.values() if p not in ci] == []
    assert all(p in readme for p in ("libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"))
