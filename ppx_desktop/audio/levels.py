"""Levels as a person reads them: a meter that holds its peaks, and "speaking" that does not
flicker between words.

An 80 ms frame's level jumps by 30 dB between syllables, so a meter that shows each reading looks
dead half the time while someone speaks, and "is the agent speaking?" asked per frame flips
several times a second. Both hold what they saw for a while. No Qt, no clock of their own: the
caller passes the time (tests use a manual one).
"""

from __future__ import annotations

from .resample import SILENCE_DB


class PeakHold:
    """A level meter's value: rises at once, holds the peak for `hold_s`, then falls at
    `fall_db_per_s` (as broadcast meters do).

    Args:
        floor_db: the value shown for silence.
    """

    def __init__(self, hold_s: float = 0.6, fall_db_per_s: float = 24.0, floor_db: float = -60.0) -> None:
        self.hold_s, self.fall, self.floor = hold_s, fall_db_per_s, floor_db
        self.level = floor_db  # what the bar shows
        self.peak = floor_db  # the held peak (a tick on the bar)
        self._peak_at = 0.0
        self._last = None

    def update(self, db: float, now: float) -> float:
        db = self.floor if db != db else max(self.floor, min(0.0, db))  # NaN -> floor
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        self.level = max(db, self.level - self.fall * dt)
        if db >= self.peak or now - self._peak_at > self.hold_s:
            if db >= self.peak:
                self.peak, self._peak_at = db, now
            else:
                self.peak = max(db, self.peak - self.fall * dt)
        return self.level


class ActivityHold:
    """True while a level was above `threshold_db` within the last `hold_frames` frames."""

    def __init__(self, threshold_db: float, hold_frames: int = 8) -> None:
        self.threshold_db, self.hold_frames = threshold_db, hold_frames
        self._left = 0

    def push(self, db: float) -> bool:
        if db == db and db > self.threshold_db and db > SILENCE_DB:
            self._left = self.hold_frames
        elif self._left:
            self._left -= 1
        return self._left > 0

    @property
    def active(self) -> bool:
        return self._left > 0

    def reset(self) -> None:
        self._left = 0
