"""Session recording: the user's and the agent's audio as two aligned tracks, saved as one stereo WAV.

Each :meth:`Recorder.add` call covers the same stretch of time on both tracks (one 80 ms step of the
conversation); a missing side is silence, so the tracks never drift apart and replaying the WAV
puts every reply exactly where it happened.
"""

from __future__ import annotations

import os
import secrets
import wave
from pathlib import Path

import numpy as np

from .files import AudioFileError, to_pcm16
from .resample import RATE


class Recorder:
    """Aligned user/agent tracks at 24 kHz.

    Args:
        max_seconds: keep at most this much (the oldest audio is dropped); None keeps everything
            (about 690 MB per hour of float32 stereo).
    """

    def __init__(self, max_seconds: float | None = None) -> None:
        self.max_samples = None if max_seconds is None else int(max_seconds * RATE)
        self.clear()

    def clear(self) -> None:
        self._user: list[np.ndarray] = []
        self._agent: list[np.ndarray] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def seconds(self) -> float:
        return self._n / RATE

    def add(self, user: np.ndarray | None, agent: np.ndarray | None) -> None:
        """Append one time step; the shorter (or missing) side is padded with silence."""
        u = np.zeros(0, np.float32) if user is None else np.asarray(user, dtype=np.float32).reshape(-1)
        a = np.zeros(0, np.float32) if agent is None else np.asarray(agent, dtype=np.float32).reshape(-1)
        n = max(u.shape[0], a.shape[0])
        if n == 0:
            return
        self._user.append(np.pad(u, (0, n - u.shape[0])))
        self._agent.append(np.pad(a, (0, n - a.shape[0])))
        self._n += n
        while self.max_samples is not None and self._n - self._user[0].shape[0] >= self.max_samples:
            self._n -= self._user.pop(0).shape[0]
            self._agent.pop(0)

    def tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, agent) float32 arrays of the same length."""
        if not self._user:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        return np.concatenate(self._user), np.concatenate(self._agent)

    def save_stereo_wav(self, path: str | os.PathLike[str]) -> Path:
        """Write agent (left) and user (right) as 24 kHz 16-bit PCM, atomically (temp file + rename)."""
        p = Path(os.fspath(path))
        user, agent = self.tracks()
        pcm = np.stack([to_pcm16(agent), to_pcm16(user)], axis=1)  # [T, 2] interleaved L/R
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise AudioFileError(f"Cannot write {p}: the folder {parent} does not exist; create it or choose another.")
        tmp = parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            with wave.open(str(tmp), "wb") as w:
                w.setnchannels(2)
                w.setsampwidth(2)
                w.setframerate(RATE)
                w.writeframes(pcm.astype("<i2", copy=False).tobytes())
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise AudioFileError(f"Cannot write {p}: {e}. Check free disk space and permissions.") from e
            raise
        return p
