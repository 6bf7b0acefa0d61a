"""Saving a conversation: stereo WAV (agent left, user right) plus the transcript as Markdown and JSON.

The same function serves "Save…" and the autosave, which rewrites one folder per session after
every turn so that a crash loses nothing already said. The WAV holds the conversation's turns in
their order and timing, with stretches where nobody spoke shortened (the controller's recorder);
the transcript files say so. "Save…" starts in the conversations folder and never replaces an
earlier save without asking (the window asks; `existing_files` says what would be replaced).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..paths import conversations_dir
from .transcript_model import Transcript

log = logging.getLogger(__name__)

WAV_NAME = "conversation.wav"
FILE_NAMES = (WAV_NAME, "transcript.md", "transcript.json")


def existing_files(folder: Path) -> list[str]:
    """The files a save into `folder` would replace."""
    return [name for name in FILE_NAMES if (Path(folder) / name).exists()]


def recording_note(controller) -> str:
    recorder = getattr(controller, "recorder", None)
    kept = getattr(recorder, "max_idle_samples", None)
    if recorder is None or kept is None:
        return ""
    left_out = recorder.left_out_seconds
    return (f"{WAV_NAME} holds the turns; stretches where nobody spoke are shortened to {kept / 24_000:.1f} s"
            + (f" ({left_out:.0f} s left out)" if left_out >= 1 else ""))


def save_conversation(folder: Path, transcript: Transcript, controller) -> list[Path]:
    """Writes `conversation.wav`, `transcript.md` and `transcript.json` into `folder` (each atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / WAV_NAME
    controller.save_recording(wav)
    transcript.recording_note = recording_note(controller)
    md, js = transcript.save(folder)
    return [wav, md, js]


def new_autosave_folder() -> Path:
    """A fresh folder under the conversations directory, named by the start time."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    folder = conversations_dir() / f"autosave_{stamp}"
    n = 1
    while folder.exists():
        n += 1
        folder = conversations_dir() / f"autosave_{stamp}_{n}"
    return folder


def new_save_folder(parent: Path | None = None) -> Path:
    """A fresh, not yet existing folder for "Save…" (the dialog offers it as the starting point)."""
    parent = Path(parent) if parent is not None else conversations_dir()
    stamp = time.strftime("%Y-%m-%d_%H-%M")
    folder, n = parent / f"conversation_{stamp}", 1
    while folder.exists():
        n += 1
        folder = parent / f"conversation_{stamp}_{n}"
    return folder
