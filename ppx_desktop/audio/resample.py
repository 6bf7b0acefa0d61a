"""Streaming resampling and re-framing, plus the level helpers the rest of ``audio/`` shares.

soxr's ``ResampleStream`` keeps filter state between chunks, so chunked output is identical to a
one-shot resample (stateless per-chunk resampling clicks at every chunk edge). Its output chunk
lengths vary with the filter delay, so :class:`Reframer` turns them back into fixed frames.
"""

from __future__ import annotations

import atexit
import weakref

import numpy as np

FRAME = 1920
RATE = 24_000
SILENCE_DB = -120.0


def level_db(x: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine = -3 dB); -120 for silence or empty input."""
    if x.size == 0:
        return SILENCE_DB
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    return max(SILENCE_DB, 10.0 * np.log10(ms)) if ms > 0 else SILENCE_DB


class StreamResampler:
    """Stateful mono float32 resampler (soxr HQ); a no-op copy when the rates are equal.

    Args:
        in_rate: input sample rate in Hz.
        out_rate: output sample rate in Hz.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = None
        if self.in_rate != self.out_rate:
            import soxr

            self._stream = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")
            _LIVE.add(self)

    def process(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self.in_rate == self.out_rate:
            return np.asarray(x, dtype=np.float32)
        if self._stream is None:
            raise RuntimeError("this resampler was closed")
        return self._stream.resample_chunk(np.asarray(x, dtype=np.float32), last=last)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()

    def close(self) -> None:
        """Frees soxr's stream now rather than whenever the garbage collector gets to it."""
        self._stream = None
        _LIVE.discard(self)


# soxr's streams are nanobind objects: any still alive when the interpreter tears soxr's module
# down (one held by a window nobody closed, a reference cycle) makes nanobind print a "leaked
# instances" report per process, which drowned the test summary. They are freed before that.
_LIVE: weakref.WeakSet[StreamResampler] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for resampler in list(_LIVE):
        resampler.close()


class Reframer:
    """FIFO that accepts chunks of any length and hands out frames of exactly ``frame`` samples."""

    def __init__(self, frame: int = FRAME, max_frames: int = 64) -> None:
        self.frame = int(frame)
        self._buf = np.zeros(self.frame * max_frames, dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def push(self, x: np.ndarray) -> int:
        """Append samples; if the FIFO is full the oldest samples are dropped (returned count)."""
        x = np.asarray(x, dtype=np.float32)
        cap = self._buf.shape[0]
        if self._n + x.shape[0] > cap:
            dropped = self._n + x.shape[0] - cap
            joined = np.concatenate([self._buf[: self._n], x])[-cap:]
            self._buf[: joined.shape[0]] = joined
            self._n = joined.shape[0]
            return dropped
        self._buf[self._n : self._n + x.shape[0]] = x
        self._n += x.shape[0]
        return 0

    def pop(self) -> np.ndarray | None:
        """The next full frame (a new array), or None if fewer than ``frame`` samples are queued."""
        if self._n < self.frame:
            return None
        out = self._buf[: self.frame].copy()
        self._buf[: self._n - self.frame] = self._buf[self.frame : self._n]
        self._n -= self.frame
        return out

    def clear(self) -> None:
        self._n = 0
