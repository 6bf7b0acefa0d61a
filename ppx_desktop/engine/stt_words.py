"""Words with start and end times from a speech-to-text token stream, by the reference's rules.

The rules are those of Kyutai's transcription script for a file (delayed-streams-modeling,
`scripts/stt_from_file_pytorch.py`, `tokens_to_timestamped_text`), which we reproduce exactly,
float roundings included:

* Token 0 (end of padding) marks a word boundary; ids up to the text padding id (3) are not text.
  Each stretch between two boundaries is decoded; one word gets the stretch's frames as its times.
  Several words in one stretch (spoken too fast for a boundary) share it: each but the last takes
  as many frames as it has tokens, the last takes the rest.
* The stretch after the last boundary ends at the first end-of-sentence token, else at the end of
  the stream or one second later, whichever comes first.
* A frame index i becomes the time `max(0, i / frame_rate - offset)`, offset = the whole seconds of
  the silence prefix plus the text delay. The script computes the times of the last stretch from
  tensors, so in float32; those of the others in Python floats. We do the same.

One deviation: when the last stretch has no end-of-sentence token and the stream goes on for more
than a second after it, the script fails (a fractional slice bound); we end that stretch one second
(12.5 frames) after its start, which is what the script's comment says it means.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import numpy as np

from .config import FRAME_RATE


@dataclass(frozen=True)
class Word:
    word: str
    start: float  # seconds
    end: float

    def to_json(self) -> dict:
        return {"word": self.word, "start": self.start, "end": self.end}


class _Frame(tp.NamedTuple):
    """A frame position and whether the script holds it in a tensor (float32 arithmetic)."""

    index: float
    tensor: bool

    def plus(self, n: int) -> _Frame:
        return _Frame(self.index + n, self.tensor)


def timestamped_words(tokens: tp.Sequence[int], decode: tp.Callable[[list[int]], str],
                      encode: tp.Callable[[str], list[int]], eos_id: int, offset_seconds: float, *,
                      frame_rate: float = FRAME_RATE, end_of_padding_id: int = 0,
                      padding_token_id: int = 3) -> list[Word]:
    """The words of `tokens` (one text token per frame, from the first frame fed to the model)."""
    tokens = [int(t) for t in tokens]
    words: list[Word] = []

    def seconds(frame: _Frame) -> float:
        if frame.tensor:
            value = np.float32(np.float32(frame.index) / np.float32(frame_rate)) - np.float32(offset_seconds)
            value = float(np.float32(value))
        else:
            value = frame.index / frame_rate - offset_seconds
        return value if value > 0 else 0.0

    def segment(start: _Frame, end: _Frame) -> None:
        text = decode([t for t in tokens[int(start.index):int(end.index)] if t > padding_token_id])
        inside = text.split()
        if not inside:
            return
        if len(inside) == 1:
            words.append(Word(text, seconds(start), seconds(end)))
            return
        for word in inside[:-1]:
            n = len(encode(word))
            words.append(Word(word, seconds(start), seconds(start.plus(n))))
            start = start.plus(n)
        words.append(Word(inside[-1], seconds(start), seconds(end)))

    boundaries = [i for i, t in enumerate(tokens) if t == end_of_padding_id]
    if not boundaries:
        return []
    for a, b in zip(boundaries, boundaries[1:]):
        segment(_Frame(a + 1, False), _Frame(b, False))
    last = _Frame(boundaries[-1] + 1, True)
    tail = tokens[boundaries[-1] + 1:]
    if eos_id in tail:
        end = last.plus(tail.index(eos_id))
    elif len(tokens) <= last.index + frame_rate:
        end = _Frame(len(tokens), False)
    else:  # where the script fails; the slice takes the whole frames of that second
        end = _Frame(last.index + frame_rate, True)
    segment(last, end)
    return words
