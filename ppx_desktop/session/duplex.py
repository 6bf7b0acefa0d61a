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
