"""The conversation as a list of turns, with Markdown/JSON export (no Qt: the view only renders it).

One entry per turn and speaker: the user's turns carry the audio the model heard (for replay,
never written to the transcript files) and the agent's turns grow piece by piece as text is
generated. The list survives mode switches; only "New conversation" clears it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24_000


@dataclass
class Entry:
    turn_id: int
    speaker: str  # "user" | "agent"
    mode: str  # "ptt" | "handsfree" | "duplex"
    started: float  # wall clock, seconds since the epoch
    duration_s: float = 0.0
    text: str = ""
    end: str = ""  # agent: why the turn ended ("max_steps", "agent_finished", ...)
    audio: np.ndarray | None = field(default=None, repr=False)

    @property
    def clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.started))

    def to_dict(self) -> dict:
        return {"turn": self.turn_id, "speaker": self.speaker, "mode": self.mode,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
                "duration_s": round(self.duration_s, 2), "text": self.text.strip(), "end": self.end}


class Transcript:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.voice = ""
        self.prompt = ""

    def clear(self) -> None:
        self.entries.clear()

    def add_user(self, turn_id: int, audio: np.ndarray | None, mode: str, started: float | None = None,
                 duration_s: float | None = None) -> Entry:
        if duration_s is None:
            duration_s = 0.0 if audio is None else len(audio) / SAMPLE_RATE
        entry = Entry(turn_id, "user", mode, started if started is not None else time.time(), duration_s,
                      text="", audio=audio)
        self.entries.append(entry)
        return entry

    def agent(self, turn_id: int, mode: str = "") -> Entry:
        """The agent entry of `turn_id`, created on its first text piece or audio frame."""
        for entry in reversed(self.entries):
            if entry.speaker == "agent" and entry.turn_id == turn_id:
                return entry
        entry = Entry(turn_id, "agent", mode, time.time())
        self.entries.append(entry)
        return entry

    def add_agent_text(self, turn_id: int, piece: str, mode: str = "") -> Entry:
        entry = self.agent(turn_id, mode)
        entry.text += piece
        return entry

    def finish_agent(self, turn_id: int, text: str, duration_s: float, end: str, mode: str = "") -> Entry:
        entry = self.agent(turn_id, mode)
        # The worker's final text is authoritative (pieces may have been coalesced on the way).
        if text:
            entry.text = text
        entry.duration_s = duration_s
        entry.end = end
        return entry

    def user_entry(self, turn_id: int) -> Entry | None:
        return next((e for e in self.entries if e.speaker == "user" and e.turn_id == turn_id), None)

    def to_markdown(self) -> str:
        lines = ["# Conversation with PersonaPlex", ""]
        if self.voice:
            lines.append(f"- Voice: {self.voice}")
        if self.prompt:
            lines.append(f"- Persona: {self.prompt}")
        if self.voice or self.prompt:
            lines.append("")
        for entry in self.entries:
            who = "You" if entry.speaker == "user" else "Agent"
            body = entry.text.strip() if entry.speaker == "agent" else "(speech)"
            lines.append(f"**{who}** · {entry.clock} · {entry.duration_s:.1f} s  ")
            lines.append(body or "(no words)")
            lines.append("")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"voice": self.voice, "prompt": self.prompt,
                           "turns": [e.to_dict() for e in self.entries]}, indent=2, ensure_ascii=False)

    def save(self, folder: Path, stem: str = "transcript") -> tuple[Path, Path]:
        """Writes `<stem>.md` and `<stem>.json` atomically (an autosave may be read after a crash)."""
        folder.mkdir(parents=True, exist_ok=True)
        md, js = folder / f"{stem}.md", folder / f"{stem}.json"
        for path, text in ((md, self.to_markdown()), (js, self.to_json())):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        return md, js
