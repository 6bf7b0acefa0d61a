"""Starts the desktop app (`ppx-desktop` without a subcommand), also from a menu entry with no console.

Errors must reach the user: an uncaught exception, in the GUI thread or any other, is written
with its traceback to the log file and shown in a dialog that names that file. With no console
(a menu launch, a windowed bundle) the dialog and the log are all there is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from . import __version__, desktop_entry, logs, paths
from .ui import qtdeps

log = logging.getLogger(__name__)

# (title, message, details) -> None; shows the error to the user. Called in the GUI thread only.
ShowError = Callable[[str, str, str], None]


def qt_error_dialog(title: str, message: str, details: str) -> None:
    """A modal error box; creates the QApplication when the error came before the window did."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    if QApplication.instance() is None:
        QApplication(sys.argv[:1])
    box = QMessageBox(QMessageBox.Icon.Critical, title, message)
    box.setDetailedText(details)
    box.exec()


def dialogs_possible(self_test: bool = False) -> bool:
    """False where nobody could click a dialog away: self-tests and offscreen/headless Qt."""
    if self_test:
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform in ("offscreen", "minimal", "vnc"):
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return True


class ErrorReporter:
    """Logs uncaught exceptions and shows them to the user, one dialog at a time.

    Exceptions from other threads are handed to the GUI thread (Qt widgets live there) through a
    queued Qt signal; before a QApplication exists they are only logged.
    """

    def __init__(self, log_path: Path, show: ShowError | None):
        self.log_path = log_path
        self.show = show
        self._showing = False
        self._bridge = None
        self._previous: tuple | None = None

    def message(self, exc: BaseException) -> str:
        return (f"ppx-desktop hit an unexpected error:\n\n{type(exc).__name__}: {exc}\n\n"
                f"The details are in the log file:\n{self.log_path}")

    def report(self, exc_type, exc, tb, thread_name: str | None = None) -> None:
        where = f" in thread {thread_name}" if thread_name else ""
        log.critical("uncaught exception%s", where, exc_info=(exc_type, exc, tb))
        if self.show is None or exc is None:
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        if threading.current_thread() is threading.main_thread():
            self._show(self.message(exc), details)
        elif self._bridge is not None:
            self._bridge.error.emit(self.message(exc), details)

    def _show(self, message: str, details: str) -> None:
        # A failing timer or slot can raise again while the dialog's event loop runs: those
        # are logged, not stacked into dozens of dialogs.
        if self._showing or self.show is None:
            return
        self._showing = True
        try:
            self.show("ppx-desktop error", message, details)
        except Exception:
            log.exception("could not show the error dialog")
        finally:
            self._showing = False

    def install(self) -> None:
        """Becomes sys.excepthook and threading.excepthook (Qt slots report through sys.excepthook)."""
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = lambda t, e, tb: self.report(t, e, tb)
        threading.excepthook = lambda a: self.report(
            a.exc_type, a.exc_value, a.exc_traceback, a.thread.name if a.thread else None
        )
        if self.show is not None:
            self._bridge = _make_bridge(self._show)

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None


def _make_bridge(slot: Callable[[str, str], None]):
    """A QObject in the calling (GUI) thread whose signal, emitted anywhere, runs `slot` there."""
    try:
        from PySide6.QtCore import QObject, Signal
    except ImportError:  # no Qt at all: errors from threads are still logged
        return None

    class _Bridge(QObject):
        error = Signal(str, str)

    bridge = _Bridge()
    bridge.error.connect(slot)
    return bridge


def handle_desktop_entry(args: argparse.Namespace) -> int:
    """--install-desktop-entry / --uninstall-desktop-entry: prints what was written or removed."""
    if args.install_desktop_entry and args.uninstall_desktop_entry:
        print("ppx-desktop: choose one of --install-desktop-entry and --uninstall-desktop-entry", file=sys.stderr)
        return 2
    try:
        change = desktop_entry.install() if args.install_desktop_entry else desktop_entry.uninstall()
    except (desktop_entry.DesktopEntryError, OSError) as exc:
        log.error("menu entry: %s", exc)
        print(f"ppx-desktop: {exc}", file=sys.stderr)
        return 1
    for line in change.lines():
        print(line)
    return 0


def _cannot_start(why: str, show: ShowError | None, self_test: bool) -> int:
    message = f"ppx-desktop cannot start: {why}"
    if logs.has_console():
        print(message, file=sys.stderr)
    if show is None and dialogs_possible(self_test):
        show = qt_error_dialog
    if show is not None:
        try:
            show("ppx-desktop error", message, "")
        except Exception:  # no display after all: stderr had it
            pass
    return 1


def launch(args: argparse.Namespace, show: ShowError | None = None) -> int:
    """Runs the desktop app (or the menu-entry actions) with logging and error reporting in place.

    `show` replaces the Qt error dialog (tests); by default a dialog is used when one can be seen.
    """
    try:
        log_path = logs.setup_logging()
    except (paths.DataDirError, OSError) as exc:  # no log file either: say it where the user looks
        return _cannot_start(str(exc), show, args.self_test)
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return handle_desktop_entry(args)

    if not args.self_test and qtdeps.uses_xcb():
        missing = qtdeps.missing_xcb_libraries()
        if missing:  # Qt would abort naming the wrong library; no dialog can open without them
            message = qtdeps.xcb_message(missing)
            log.error("%s", message)
            print(f"ppx-desktop: {message}", file=sys.stderr)
            return 1
    if show is None and dialogs_possible(args.self_test):
        show = qt_error_dialog
    reporter = ErrorReporter(log_path, show)
    reporter.install()
    log.info("ppx-desktop %s starting (Python %s, %s%s)", __version__, sys.version.split()[0], sys.platform,
             ", frozen bundle" if getattr(sys, "frozen", False) else "")
    try:
        from .ui.app import run_app

        return int(run_app(demo=args.demo, model_dir=args.app_model_dir, self_test=args.self_test) or 0)
    except Exception as exc:
        # Errors before the window exists (a broken install, a missing library) land here,
        # after the event loop has gone too.
        reporter.report(type(exc), exc, exc.__traceback__)
        return 1
    finally:
        reporter.uninstall()
        log.info("ppx-desktop stopped")
