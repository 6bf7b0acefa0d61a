"""Saving a conversation: stereo WAV (agent left, user right) plus the transcript as Markdown and JSON.

The same function serves "Save conversation…" and the autosave, which rewrites one folder per
session after every turn so that a crash loses nothing already said.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..paths import conversations_dir
from .transcript_model import Transcript

log = logging.getLogger(__name__)

WAV_NAME = "conversation.wav"


def save_conversation(folder: Path, transcript: Transcript, controller) -> list[Path]:
    """Writes `conversation.wav`, `transcript.md` and `transcript.json` into `folder` (each atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / WAV_NAME
    controller.save_recording(wav)
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
