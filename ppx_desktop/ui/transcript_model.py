"""The conversation as a list of turns, with Markdown/JSON export (no Qt: the view only renders it).

One entry per turn and speaker: the user's turns carry the audio the model heard (for replay,
never written to the transcript files) and the agent's turns grow piece by piece as text is
generated. A change of voice or persona adds a divider ("note") entry, and every turn keeps the
voice and persona it was spoken with, so a saved file tells the whole history. Turns are numbered
from 1 in each conversation (the controller's turn ids only tie the two sides of a turn together).
The list survives mode switches; only "New conversation" clears it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24_000
# The tokenizer's control pieces: the model may emit them, nobody says them.
SPECIAL_PIECES = re.compile(r"</?(?:system|s|unk|pad)>")


def spoken(text: str) -> str:
    """The agent's words without control pieces, with their spacing tidied."""
    return re.sub(r"\s{2,}", " ", SPECIAL_PIECES.sub("", text))


@dataclass
class Entry:
    turn_id: int
    speaker: str  # "user" | "agent" | "note" (a divider: the voice or persona changed)
    mode: str  # "ptt" | "handsfree" | "duplex" ("" for notes)
    started: float  # wall clock, seconds since the epoch
    duration_s: float = 0.0
    text: str = ""
    end: str = ""  # agent: why the turn ended ("max_steps", "agent_finished", "cancelled", ...)
    audio: np.ndarray | None = field(default=None, repr=False)
    number: int = 0  # the turn's number in this conversation (0 for notes)
    voice: str = ""
    prompt: str = ""
    said: list[str] = field(default_factory=list)  # user: final lines of their words (speech-to-text)
    live: str = ""  # user: the line still growing while they speak
    said_at: tuple[float, float] | None = None  # user: first and last word, seconds of the conversation

    @property
    def clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.started))

    @property
    def shown_text(self) -> str:
        if self.speaker == "user":
            return " ".join([*self.said, self.live]).strip()
        return spoken(self.text).strip()

    def to_dict(self) -> dict:
        if self.speaker == "note":
            return {"speaker": "note", "time": self._iso(), "text": self.text, "voice": self.voice,
                    "persona": self.prompt}
        data = {"turn": self.number, "speaker": self.speaker, "mode": self.mode, "time": self._iso(),
                "duration_s": round(self.duration_s, 2), "text": self.shown_text, "end": self.end,
                "voice": self.voice, "persona": self.prompt}
        if self.said_at is not None:
            data["words_s"] = [round(self.said_at[0], 2), round(self.said_at[1], 2)]
        return data

    def _iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started))


class Transcript:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.voice = ""
        self.prompt = ""
        self.recording_note = ""  # how the saved recording was made (idle left out), for the files
        self._numbers: dict[int, int] = {}

    def clear(self) -> None:
        """A new conversation: no turns, numbering from 1; the voice and persona stay."""
        self.entries.clear()
        self._numbers.clear()

    def set_persona(self, voice: str, prompt: str) -> Entry | None:
        """The voice and persona from now on; a divider when they change within a conversation."""
        changed = (voice, prompt) != (self.voice, self.prompt)
        self.voice, self.prompt = voice, prompt
        if not changed or not any(e.speaker != "note" for e in self.entries):
            return None
        what = []
        last_voice = next((e.voice for e in reversed(self.entries) if e.speaker != "note"), voice)
        last_prompt = next((e.prompt for e in reversed(self.entries) if e.speaker != "note"), prompt)
        if voice != last_voice:
            what.append(f"voice {voice}")
        if prompt != last_prompt:
            what.append("persona: " + (prompt or "(none)"))
        if not what:
            return None
        note = Entry(0, "note", "", time.time(), text="Now " + "; ".join(what) + ". The agent starts afresh.",
                     voice=voice, prompt=prompt)
        self.entries.append(note)
        return note

    def _number(self, turn_id: int) -> int:
        if turn_id not in self._numbers:
            self._numbers[turn_id] = len(self._numbers) + 1
        return self._numbers[turn_id]

    def add_user(self, turn_id: int, audio: np.ndarray | None, mode: str, started: float | None = None,
                 duration_s: float | None = None) -> Entry:
        """The user's side of a turn; fills in a live (duplex) entry made at the start of the session."""
        if duration_s is None:
            duration_s = 0.0 if audio is None else len(audio) / SAMPLE_RATE
        existing = self.user_entry(turn_id)
        if existing is not None:
            existing.audio, existing.duration_s = audio, duration_s
            if started is not None:
                existing.started = started
            return existing
        entry = Entry(turn_id, "user", mode, started if started is not None else time.time(), duration_s,
                      audio=audio, number=self._number(turn_id), voice=self.voice, prompt=self.prompt)
        # Both sides of a live session run at once: the user's goes first, as it started first.
        agent = next((i for i, e in enumerate(self.entries) if e.speaker == "agent" and e.turn_id == turn_id), None)
        if agent is None:
            self.entries.append(entry)
        else:
            self.entries.insert(agent, entry)
        return entry

    def agent(self, turn_id: int, mode: str = "") -> Entry:
        """The agent entry of `turn_id`, created on its first text piece or audio frame."""
        for entry in reversed(self.entries):
            if entry.speaker == "agent" and entry.turn_id == turn_id:
                return entry
        entry = Entry(turn_id, "agent", mode, time.time(), number=self._number(turn_id), voice=self.voice,
                      prompt=self.prompt)
        self.entries.append(entry)
        return entry

    def add_agent_text(self, turn_id: int, piece: str, mode: str = "") -> Entry:
        entry = self.agent(turn_id, mode)
        entry.text += piece
        return entry

    def finish_agent(self, turn_id: int, text: str, duration_s: float, end: str, mode: str = "") -> Entry | None:
        """Completes the agent's entry; an answer cancelled before a word leaves none (None)."""
        existing = next((e for e in self.entries if e.speaker == "agent" and e.turn_id == turn_id), None)
        if end == "cancelled" and not spoken(text or (existing.text if existing else "")).strip():
            if existing is not None:
                self.entries.remove(existing)
            return None
        entry = existing or self.agent(turn_id, mode)
        # The worker's final text is authoritative (pieces may have been coalesced on the way).
        if text:
            entry.text = text
        entry.duration_s = duration_s
        entry.end = end
        return entry

    def user_words(self, turn_id: int, text: str, final: bool, mode: str, start: float, end: float) -> Entry:
        """The user's words of `turn_id` as the speech-to-text model writes them: the growing line
        replaced as it grows, a final line kept (live duplex has several per session)."""
        entry = self.user_entry(turn_id) or self.add_user(turn_id, None, mode)
        if final:
            entry.said.append(text)
            entry.live = ""
            first = entry.said_at[0] if entry.said_at is not None else start
            entry.said_at = (first, end)
        else:
            entry.live = text
        return entry

    def user_entry(self, turn_id: int) -> Entry | None:
        return next((e for e in self.entries if e.speaker == "user" and e.turn_id == turn_id), None)

    def voices_used(self) -> list[str]:
        return list(dict.fromkeys(e.voice for e in self.entries if e.voice)) or ([self.voice] if self.voice else [])

    def prompts_used(self) -> list[str]:
        found = list(dict.fromkeys(e.prompt for e in self.entries if e.speaker != "note"))
        return found or ([self.prompt] if self.prompt else [])

    def to_markdown(self) -> str:
        lines = ["# Conversation with PersonaPlex", ""]
        voices, prompts = self.voices_used(), [p for p in self.prompts_used() if p]
        if voices:
            lines.append(f"- Voice{'s' if len(voices) > 1 else ''}: {', '.join(voices)}")
        for prompt in prompts:
            lines.append(f"- Persona: {prompt}")
        if self.recording_note:
            lines.append(f"- Recording: {self.recording_note}")
        if len(lines) > 2:
            lines.append("")
        for entry in self.entries:
            if entry.speaker == "note":
                lines += ["---", f"*{entry.clock} · {entry.text}*", ""]
                continue
            who = "You" if entry.speaker == "user" else "Agent"
            body = entry.shown_text or ("(speech)" if entry.speaker == "user" else "")
            if entry.speaker == "agent" and entry.end == "cancelled":
                body += " (interrupted)"
            lines.append(f"**{who}** · turn {entry.number} · {entry.clock} · {entry.duration_s:.1f} s  ")
            lines.append(body or "(no words)")
            lines.append("")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"voices": self.voices_used(), "personas": self.prompts_used(),
                           "voice": self.voice, "prompt": self.prompt, "recording": self.recording_note,
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
