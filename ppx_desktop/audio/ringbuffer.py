"""Lock-free single-producer single-consumer ring buffer of float32 samples.

The PortAudio callback is one side of every ring the app uses (it writes captured audio and the
played reference, and reads queued playback). It must never block, allocate a buffer or take a lock
(sounddevice's rules: a late callback is an audible glitch), so the ring is built from a buffer
allocated once and two **monotonic** sample counters:

* ``_write`` is only ever assigned by the producer, ``_read`` only by the consumer.
* Assigning a Python int attribute is atomic under the GIL, so each side reads a consistent value
  of the other's counter. The producer publishes ``_write`` *after* copying the samples, so the
  consumer never sees samples that are not there yet; the consumer publishes ``_read`` after copying
  out, so the producer never overwrites samples still being read.
* The counters never wrap (Python ints are unbounded); positions are taken modulo the capacity.

``request_skip`` lets the *producer* ask the consumer to drop queued samples (bounded playback queue
that drops the oldest frame, barge-in that clears everything): the producer raises a floor
``_min_read`` and the consumer jumps its own read counter up to it on its next read. That keeps the
rule "each counter has one writer" even though both sides want to discard data.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """SPSC float32 ring of ``capacity`` samples.

    Args:
        capacity: number of samples the ring holds.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._write = 0  # producer-owned
        self._read = 0  # consumer-owned
        self._min_read = 0  # producer-owned skip floor, applied by the consumer

    # --- either side -------------------------------------------------------------------------

    def available(self) -> int:
        """Samples ready to read (after any requested skip)."""
        w = self._write
        return w - max(self._read, self._min_read)

    def space(self) -> int:
        """Samples the producer may write without overwriting unread data."""
        return self.capacity - (self._write - self._read)

    @property
    def written(self) -> int:
        """Total samples ever written (the producer's position)."""
        return self._write

    @property
    def read_position(self) -> int:
        """Total samples consumed or skipped (the consumer's position)."""
        return max(self._read, self._min_read)

    # --- producer ----------------------------------------------------------------------------

    def write(self, x: np.ndarray) -> int:
        """Copy as much of ``x`` as fits; returns the number of samples written (rest dropped)."""
        n = min(int(x.shape[0]), self.space())
        if n <= 0:
            return 0
        w = self._write
        start = w % self.capacity
        first = min(n, self.capacity - start)
        self._buf[start : start + first] = x[:first]
        if n > first:
            self._buf[: n - first] = x[first:n]
        self._write = w + n  # publish after the copy
        return n

    def request_skip(self, keep: int) -> int:
        """Ask the consumer to drop all but the newest ``keep`` queued samples; returns samples dropped."""
        w = self._write
        floor = w - max(0, int(keep))
        current = max(self._read, self._min_read)
        if floor <= current:
            return 0
        self._min_read = floor
        return floor - current

    # --- consumer ----------------------------------------------------------------------------

    def read_into(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` samples into ``out``; returns how many were copied."""
        r = self._read
        floor = self._min_read
        if r < floor:
            r = floor
        n = min(int(out.shape[0]), self._write - r)
        if n <= 0:
            self._read = r
            return 0
        start = r % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._buf[start : start + first]
        if n > first:
            out[first:n] = self._buf[: n - first]
        self._read = r + n  # publish after the copy
        return n

    def read(self, n: int) -> np.ndarray:
        """Consumer-side convenience (allocates; not for the audio callback)."""
        out = np.empty(min(int(n), self.available()), dtype=np.float32)
        got = self.read_into(out)
        return out[:got]

    def discard(self) -> int:
        """Consumer-side: drop everything queued; returns samples dropped."""
        w = self._write
        r = max(self._read, self._min_read)
        self._read = w
        return w - r
