"""Holding back the start of an answer so that it plays without a gap on a slow GPU.

Playback consumes one 80 ms frame every 80 ms; the model makes one every `step` seconds. When
`step` is longer (layer offload runs at about 1.7x real time), starting at the first frame
starves the speaker after a few frames and the answer plays in fragments. Waiting until `k`
frames exist before starting keeps it whole when, for every frame `i` of an answer of `n`:

    (i + 1) * step  <=  k * step + i * frame        (frame i is made before it is due)

The tightest is the last frame, so `k = n - (n - 1) * frame / step`. The answer's length is not
known in advance (early stop may end it sooner), so `n` is the turn's step limit: an answer that
ends early has then only waited longer than needed, never played a gap. The step time comes
from the frames this worker has just run (the user's own frames of the turn included), taken
high (a percentile, plus a margin) because a gap costs more than a little more waiting.

No Qt and no audio device here: the worker feeds `PreRoll`, tests drive it with a manual clock.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass

FRAME_S = 0.08
MIN_HOLD = 1  # faster than real time: play at once (the margin covers a step close to 80 ms)


@dataclass(frozen=True)
class PreRollConfig:
    """Args:
        frame_s: how long one frame plays.
        margin: the step time is multiplied by 1 + margin (jitter beyond the percentile).
        percentile: which of the recent step times stands for "the" step time.
        window: how many recent step times are kept.
    """

    frame_s: float = FRAME_S
    margin: float = 0.15
    percentile: float = 90.0
    window: int = 64


def hold_frames(step_s: float, max_frames: int, config: PreRollConfig = PreRollConfig()) -> int:
    """Frames to generate before an answer of at most `max_frames` starts to play."""
    if max_frames <= 0:
        return 0
    step = step_s * (1.0 + config.margin)
    if step <= config.frame_s:
        return min(MIN_HOLD, max_frames)
    need = max_frames - (max_frames - 1) * config.frame_s / step
    return min(max_frames, max(MIN_HOLD, math.ceil(need - 1e-9)))


class StepTimes:
    """Recent frame times (seconds), kept across turns: the first answer of a conversation
    already knows the GPU's pace from the user's frames."""

    def __init__(self, config: PreRollConfig = PreRollConfig()) -> None:
        self.config = config
        self._times: collections.deque[float] = collections.deque(maxlen=config.window)

    def add(self, seconds: float, count: int = 1) -> None:
        for _ in range(max(0, min(count, self.config.window))):
            self._times.append(max(0.0, float(seconds)))

    def estimate(self) -> float | None:
        """The `percentile` of the recent step times; None before any."""
        if not self._times:
            return None
        ordered = sorted(self._times)
        index = min(len(ordered) - 1, math.ceil(self.config.percentile / 100.0 * len(ordered)) - 1)
        return ordered[max(0, index)]

    def __len__(self) -> int:
        return len(self._times)


class PreRoll:
    """Gates one answer's frames: holds them until enough exist, then passes each one on.

    Args:
        deliver: called with each (pcm, text) once it may play.
        max_frames: the turn's step limit.
        step_times: where the current step time estimate comes from.
    """

    def __init__(self, deliver: Callable[[object, str | None], None], max_frames: int, step_times: StepTimes,
                 config: PreRollConfig | None = None) -> None:
        self.deliver = deliver
        self.max_frames = max_frames
        self.step_times = step_times
        self.config = config or step_times.config
        self.held: list[tuple[object, str | None]] = []
        self.started = False
        self.generated = 0

    def need(self) -> int:
        step = self.step_times.estimate()
        return hold_frames(step if step is not None else self.config.frame_s, self.max_frames, self.config)

    def push(self, pcm, text: str | None) -> bool:
        """Adds the next frame; True once playback has started (this frame included)."""
        self.generated += 1
        if self.started:
            self.deliver(pcm, text)
            return True
        self.held.append((pcm, text))
        if self.generated >= self.need():
            self.flush()
        return self.started

    def flush(self) -> None:
        """Starts playback with everything held (the answer ended, or enough is buffered)."""
        held, self.held = self.held, []
        self.started = self.started or bool(held)
        for pcm, text in held:
            self.deliver(pcm, text)

    def drop(self) -> int:
        """Discards what is held (a cancelled answer is never played); returns how many frames."""
        n, self.held = len(self.held), []
        return n
