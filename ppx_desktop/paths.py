"""Where the app keeps its own files: settings aside (Qt's QSettings), everything per user.

- data: custom voices, saved prompts, conversations, autosaves, the post-prompt state cache.
- logs: the log file a launcher-started app writes (no console to read).

`PPX_DESKTOP_HOME` moves all of it under one folder (tests, portable installs).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "ppx-desktop"


def _base_data_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / APP_NAME


class DataDirError(ValueError):
    """The data folder (or one inside it) cannot be created or used; the message says what to do."""


def _ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise DataDirError(f"the app's data folder {path} cannot be created: {blocker} is a file. Move that file "
                           "away, or set PPX_DESKTOP_HOME to another folder") from exc
    except OSError as exc:
        raise DataDirError(f"the app's data folder {path} cannot be created ({exc.strerror or exc}): check its "
                           "permissions and free space, or set PPX_DESKTOP_HOME to another folder") from exc
    return path


def data_dir() -> Path:
    """The per-user data folder (created on first use)."""
    home = os.environ.get("PPX_DESKTOP_HOME")
    return _ensure_dir(Path(home).expanduser() if home else _base_data_dir())


def sub_dir(name: str) -> Path:
    return _ensure_dir(data_dir() / name)


def voices_dir() -> Path:
    """Custom voices (`NAME.pt` in the presets' format)."""
    return sub_dir("voices")


def prompts_dir() -> Path:
    """User-saved persona prompts."""
    return sub_dir("prompts")


def conversations_dir() -> Path:
    """Saved and autosaved conversations."""
    return sub_dir("conversations")


def state_cache_dir() -> Path:
    """Generator states after the prompt phases, keyed by model, voice and prompt."""
    return sub_dir("state-cache")


def log_dir() -> Path:
    return sub_dir("logs")
