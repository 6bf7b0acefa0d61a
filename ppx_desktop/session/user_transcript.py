"""The user's side of the transcript, from the speech-to-text tokens the frames emit.

Each frame with a transcriber yields one text token of the user's speech (about 0.5 s behind
the audio). `UserTranscript` collects them into lines: while the user speaks a line grows (live
text, `final=False`); it becomes final, with word times, when the turn ends (turn-based modes)
or, in live duplex, at a pause: the model's end-of-turn probability above `eot_threshold`, or
`gap_frames` frames without a word.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass, field

from ..engine.stt_words import Word


@dataclass(frozen=True)
class UserLine:
    """One stretch of the user's speech: its text and, once final, its word times (seconds of the
    conversation, counted from the end of the prompts)."""

    text: str
    start: float
    end: float
    final: bool
    words: tuple[Word, ...] = ()


@dataclass
class UserTranscript:
    """Args:
        transcriber: an `engine.transcriber.Transcriber` (decodes tokens, times words).
        on_line: called with each new or changed `UserLine`.
    """

    transcriber: object
    on_line: tp.Callable[[UserLine], None] | None = None
    eot_threshold: float = 0.6
    gap_frames: int = 19  # 1.5 s without a word ends a duplex line
    lines: list[UserLine] = field(default_factory=list)

    def __post_init__(self):
        self._tokens: list[int] = []
        self._first = 0  # conversation frame of self._tokens[0]
        self._live = ""
        self._quiet = 0

    def restart(self) -> None:
        """A new conversation: nothing pending, nothing kept."""
        self._tokens, self._live, self._quiet = [], "", 0
        self.lines = []

    def add(self, frame: int, token: int | None, end_of_turn: float | None, live: bool) -> None:
        """The transcriber's token of conversation frame `frame` (None or negative: none yet)."""
        if token is None or token < 0:
            return
        if not self._tokens:
            self._first = frame
        self._tokens.append(token)
        text = self.transcriber.text_of(self._tokens)
        if text != self._live:
            self._live, self._quiet = text, 0
            self._emit(UserLine(text, self._first / 12.5, (frame + 1) / 12.5, False))
        else:
            self._quiet += 1
        if live and self._live and (self._quiet >= self.gap_frames or (end_of_turn or 0.0) >= self.eot_threshold):
            self.finish()

    def finish(self, not_before: float = 0.0) -> UserLine | None:
        """Ends the current line (a turn ended, or a pause): its words with times, none earlier
        than `not_before` (the turn's start: the model's delay must not date a word before it)."""
        tokens, first = self._tokens, self._first
        self._tokens, self._live, self._quiet = [], "", 0
        words = self.transcriber.words(tokens, first) if tokens else []
        words = [Word(w.word, max(w.start, not_before), max(w.end, not_before)) for w in words]
        if words:
            line = UserLine(" ".join(w.word.strip() for w in words), words[0].start, words[-1].end, True,
                            tuple(words))
        else:  # text without a word boundary yet: keep it, timed by its frames
            text = self.transcriber.text_of(tokens) if tokens else ""
            if not text:
                return None
            line = UserLine(text, first / 12.5, (first + len(tokens)) / 12.5, True)
        self.lines.append(line)
        self._emit(line)
        return line

    def _emit(self, line: UserLine) -> None:
        if self.on_line is not None:
            self.on_line(line)
