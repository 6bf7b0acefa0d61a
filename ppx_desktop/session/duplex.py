"""A bounded frame queue for live duplex input: stale audio is dropped, never piled up.

When the model falls behind real time, an unbounded queue turns into seconds of lag; here the
oldest frames go first once `capacity` frames wait, and each drop is counted for the meters.
"""

from __future__ import annotations

import collections
import threading

import numpy as np


class FrameQueue:
    def __init__(self, capacity: int = 3):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dropped = 0
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._cond = threading.Condition()

    def put(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        with self._cond:
            if len(self._frames) >= self.capacity:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        with self._cond:
            if not self._frames:
                self._cond.wait(timeout)
            return self._frames.popleft() if self._frames else None

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)


class TurnFrames:
    """The microphone frames of a hands-free turn streamed while the user speaks (semantic end of
    turn), each tagged with its turn: frames of a turn that was cancelled are never heard by the
    next one. Nothing is dropped (a slow GPU catches up after the turn), up to `capacity` frames."""

    def __init__(self, capacity: int = 1000):
        self.capacity = capacity
        self._frames: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        self._cond = threading.Condition()

    def put(self, turn_id: int, frame: np.ndarray) -> None:
        frame = np.asarray(frame, dtype=np.float32).reshape(-1)
        with self._cond:
            if len(self._frames) >= self.capacity:  # only past the worker's own turn limit
                self._frames.popleft()
            self._frames.append((turn_id, frame))
            self._cond.notify()

    def get(self, turn_id: int, timeout: float | None = None) -> np.ndarray | None:
        """The next frame of `turn_id`, or None after `timeout`. Turn ids only grow: frames of
        older turns are discarded, a later turn's are left for it."""
        with self._cond:
            self._discard_older(turn_id)
            if not self._frames:
                self._cond.wait(timeout)
                self._discard_older(turn_id)
            if self._frames and self._frames[0][0] == turn_id:
                return self._frames.popleft()[1]
            return None

    def _discard_older(self, turn_id: int) -> None:
        while self._frames and self._frames[0][0] < turn_id:
            self._frames.popleft()
