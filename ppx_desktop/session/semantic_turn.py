"""Semantic end of turn for hands-free mode: the speech-to-text model says the user has finished.

Silence alone has to wait long (1.5 s by default) because people pause inside a sentence. The
speech-to-text model's end-of-turn head (engine/transcriber.py) scores every frame by what was
said, so a finished sentence can end the turn after a short pause while "I want to... um" does
not. The rule stays cautious: the probability must hold for `hold_frames` frames in a row and the
voice detector must hear at least `min_silence_s` of silence, so a turn never ends while the user
is audibly speaking. The silence rule still ends a turn the model does not (a fallback, not a
replacement).

Pure: feed one probability per frame with the detector's silence so far; no threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

END_OF_TURN_MODES = ("silence", "semantic")


@dataclass(frozen=True)
class SemanticTurnRule:
    """Args:
        threshold: the end-of-turn probability that counts (Unmute-style detectors use 0.5-0.6).
        hold_frames: frames in a row at or above it (2 = 160 ms: one noisy frame never ends a turn).
        min_silence_s: silence the voice detector must hear as well (two of silero's 32 ms windows
            at least; 0.16 s keeps a breath between words from ending the turn).
    """

    threshold: float = 0.6
    hold_frames: int = 2
    min_silence_s: float = 0.16

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1 or self.hold_frames < 1 or self.min_silence_s < 0:
            raise ValueError("SemanticTurnRule needs 0 < threshold < 1, hold_frames >= 1 and min_silence_s >= 0")


class SemanticEndOfTurn:
    """`push(probability, silence_s)` once per frame of the user's turn; True once the turn is over."""

    def __init__(self, rule: SemanticTurnRule | None = None) -> None:
        self.rule = rule or SemanticTurnRule()
        self.reset()

    def reset(self) -> None:
        self._run = 0

    def push(self, probability: float, silence_s: float) -> bool:
        if math.isnan(probability) or probability < self.rule.threshold:
            self._run = 0
            return False
        self._run += 1
        return self._run >= self.rule.hold_frames and silence_s >= self.rule.min_silence_s
