"""Long conversations: the context is rebuilt before it would drop the voice and persona prompt.

The temporal transformer attends to the last 3000 frames (4 minutes). Left alone, a conversation
scrolls like the reference's: after four minutes the voice prompt and then the persona prompt
leave the window first, and the agent forgets who it is and how it sounds. Instead, before that
point, the conversation's state is rebuilt as the post-prompt state followed by the most recent
`history_frames` frames of the conversation (both sides' tokens, recorded frame by frame) and
the frame in flight, replayed as one batched prefill (engine/prefill.py). The agent keeps its
persona and the recent conversation; what is older is forgotten.

When: turn-based modes refresh before a turn that would not fit any more. Live duplex refreshes
at a quiet moment (neither side has spoken for `quiet_frames`) once the end of the window is
`lookahead_frames` away, or, failing one, at the last frame; it keeps only as much history as it
can replay within `stall_budget_ms` (measured replay speed), so the stall stays below what the
worker's bounded input queue absorbs without dropping audio.

`ContextKeeper` only decides (host integers, no tensors); `Conversation` runs the refresh.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..engine.config import FRAME_RATE

FRAME_MS = 1000.0 / FRAME_RATE
PAD_IDS = (0, 3)  # the agent's text is padding: it is not saying a word
MIN_ROOM = 16  # below this many conversation frames beside the prompt a refresh cannot help


@dataclass(frozen=True)
class ContextSettings:
    """What a conversation does when its context window would drop the prompt.

    Attributes:
        refresh: rebuild the context (prompt + recent history); False scrolls like the reference.
        history_frames: conversation frames kept by a refresh (750 = the last minute).
        quiet_frames: live duplex: both sides quiet this long make a quiet moment (640 ms).
        quiet_db: a side below this level (RMS dBFS), and the agent saying no word, is quiet.
        lookahead_frames: live duplex: wait for a quiet moment this long before the end (30 s).
        stall_budget_ms: live duplex: the longest a refresh may hold up the frames.
        calibration_frames: frames of a trial replay that measures the replay speed at start.
    """

    refresh: bool = True
    history_frames: int = 750
    quiet_frames: int = 8
    quiet_db: float = -40.0
    lookahead_frames: int = 375
    stall_budget_ms: float = 180.0
    calibration_frames: int = 64

    def __post_init__(self):
        if self.history_frames < 0 or self.quiet_frames < 1 or self.lookahead_frames < 1:
            raise ValueError("history_frames must be >= 0, quiet_frames and lookahead_frames >= 1")

    def within_input_queue(self, max_input_lag_frames: int) -> ContextSettings:
        """These settings with a duplex stall well inside a bounded input queue of that many frames
        (a longer stall makes the queue drop the oldest microphone frames)."""
        return dataclasses.replace(self, stall_budget_ms=0.75 * max_input_lag_frames * FRAME_MS)


@dataclass(frozen=True)
class Refresh:
    """One context refresh, as diagnostics and the meters report it."""

    frames_before: int  # model steps in the context before
    kept_frames: int  # conversation frames kept after the prompt
    frames_after: int
    stall_ms: float  # wall time the conversation stood still
    reason: str  # "before the turn", "quiet moment" or "deadline"


class FrameHistory:
    """The most recent frames of a conversation, `[17]` tokens each, in a fixed host ring."""

    def __init__(self, capacity: int, num_streams: int):
        self.capacity = max(1, capacity)
        self.tokens = np.zeros((self.capacity, num_streams), dtype=np.int64)
        self.count = 0  # frames recorded since the last clear

    def clear(self) -> None:
        self.count = 0

    def append(self, tokens: np.ndarray) -> None:
        self.tokens[self.count % self.capacity] = tokens
        self.count += 1

    def last(self, n: int) -> np.ndarray:
        """The last `n` frames, oldest first: `[n, 17]`."""
        if not 0 <= n <= min(self.count, self.capacity):
            raise ValueError(f"only {min(self.count, self.capacity)} frames are kept, not {n}")
        return self.tokens[np.arange(self.count - n, self.count) % self.capacity]


class ContextKeeper:
    """Decides when a conversation refreshes its context and how many frames it keeps.

    Args:
        settings: the policy.
        window: keys a step attends to (the context, minus one with the reference's ring quirk).
        num_streams: tokens per frame.
    """

    def __init__(self, settings: ContextSettings, window: int, num_streams: int):
        self.settings, self.window = settings, window
        self.history = FrameHistory(settings.history_frames, num_streams)
        self.prompt_frames = 0
        self.count = 0  # refreshes since the conversation was created
        self.recent: collections.deque[Refresh] = collections.deque(maxlen=32)
        self.ms_per_frame: float | None = None  # measured replay time per frame
        self._quiet_run = 0

    # --- conversation events -------------------------------------------------------------------
    def start(self, prompt_frames: int) -> None:
        """A (re)started conversation: `prompt_frames` = the generator's offset after the prompts."""
        self.prompt_frames = prompt_frames
        self.history.clear()
        self._quiet_run = 0

    @property
    def room(self) -> int:
        """Conversation frames that fit in the window beside the whole prompt."""
        return self.window - self.prompt_frames

    @property
    def active(self) -> bool:
        return self.settings.refresh and self.room >= MIN_ROOM

    def record(self, frame_index: int, tokens: np.ndarray | None) -> None:
        """A step's output frame (`frame_index` = its real time); prompt frames are not history."""
        if self.active and tokens is not None and frame_index >= self.prompt_frames:
            self.history.append(tokens)

    def observe(self, user_pcm: np.ndarray, agent_pcm: np.ndarray, text_id: int) -> None:
        """A live frame: counts how long neither side has been speaking."""
        q = self.settings.quiet_db
        quiet = _level_db(user_pcm) < q and _level_db(agent_pcm) < q and text_id in PAD_IDS
        self._quiet_run = self._quiet_run + 1 if quiet else 0

    def refreshed(self, refresh: Refresh) -> None:
        self.count += 1
        self.recent.append(refresh)
        self.measured(refresh.stall_ms, refresh.kept_frames + 1)
        self._quiet_run = 0

    def measured(self, ms: float, frames: int) -> None:
        """A replay of `frames` frames took `ms` (calibration or refresh): the speed for the cap."""
        if frames > 0:
            self.ms_per_frame = ms / frames

    # --- decisions: the frames to keep, or None for no refresh ---------------------------------
    def before_turn(self, frames_seen: int, need: int) -> int | None:
        """Before a turn of up to `need` frames: refresh now if it would not fit."""
        if not self.active or frames_seen + need <= self.window:
            return None
        return self._keep(self.room - need)

    def before_frame(self, frames_seen: int, live: bool) -> tuple[int, str] | None:
        """Before one frame: (frames to keep, reason) if the conversation must refresh now."""
        if not self.active:
            return None
        if frames_seen >= self.window:  # this step would no longer see the start of the prompt
            return self._keep(self.room // 2, live), "deadline"
        look = min(self.settings.lookahead_frames, self.room // 4)
        if live and frames_seen >= self.window - look and self._quiet_run >= self.settings.quiet_frames:
            return self._keep(self.room - 2 * look, live), "quiet moment"
        return None

    def _keep(self, fits: int, live: bool = False) -> int:
        kept = min(self.settings.history_frames, self.history.count, self.history.capacity, fits)
        if live and self.ms_per_frame:
            # The replay must end within the stall budget (the frame in flight is replayed too).
            kept = min(kept, math.floor(self.settings.stall_budget_ms / self.ms_per_frame) - 1)
        return max(0, kept)


def _level_db(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0
    return 20.0 * math.log10(max(rms, 1e-10))
