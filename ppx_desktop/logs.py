"""Logging for the app: a rotating file in the user's data folder, plus stderr when there is one.

An app started from a desktop menu has no console, so the log file is where errors can be read
afterwards; the error dialog (ppx_desktop/launcher.py) points the user to it.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from . import paths

LOG_NAME = "ppx-desktop.log"
_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"
# Marks our handlers so a second setup (tests, a restarted app) replaces rather than duplicates them.
_OWNED = "_ppx_desktop_handler"


def log_file() -> Path:
    return paths.log_dir() / LOG_NAME


def has_console() -> bool:
    """True when stderr goes somewhere: not with pythonw.exe or a windowed bundle on Windows."""
    stream = sys.stderr
    return stream is not None and getattr(stream, "fileno", None) is not None


def setup_logging(level: int = logging.INFO, console: bool | None = None) -> Path:
    """Sends the `ppx_desktop` loggers (and warnings) to the log file and, if present, stderr.

    Returns the log file's path. `console=None` means: to stderr if a console exists.
    """
    path = log_file()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()

    # 2 MB x 4 files: enough for several sessions of tracebacks, never a disk filler.
    file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    handlers: list[logging.Handler] = [file_handler]
    if console if console is not None else has_console():
        stream_handler = logging.StreamHandler(sys.stderr)
        stream_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(stream_handler)
    for handler in handlers:
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    # Other libraries log at WARNING and above; our own records reach the handlers at `level`
    # (propagation to the root's handlers does not check the root's level).
    root.setLevel(logging.WARNING)
    logging.getLogger("ppx_desktop").setLevel(level)
    logging.captureWarnings(True)
    return path
