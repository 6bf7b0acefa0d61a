"""Session recording: the user's and the agent's audio as two aligned tracks, saved as one stereo WAV.

Each :meth:`Recorder.add` call covers the same stretch of time on both tracks (one 80 ms step of the
conversation); a missing side is silence, so the tracks never drift apart and replaying the WAV
puts every reply exactly where it happened.

The recording is the conversation, not the wall clock: steps marked idle (nobody talking to the
model, no agent audio) beyond `max_idle_s` in a row are left out, keeping the part just before
the next turn so that its lead-in stays. A window left open for an hour records its turns only.
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
        max_idle_s: idle stretches are shortened to this (None: everything is kept).
    """

    def __init__(self, max_seconds: float | None = None, max_idle_s: float | None = None) -> None:
        self.max_samples = None if max_seconds is None else int(max_seconds * RATE)
        self.max_idle_samples = None if max_idle_s is None else int(max_idle_s * RATE)
        self.clear()

    def clear(self) -> None:
        self._user: list[np.ndarray] = []
        self._agent: list[np.ndarray] = []
        self._n = 0
        self._idle: list[tuple[np.ndarray, np.ndarray]] = []  # the current idle stretch, newest last
        self._idle_n = 0
        self.left_out = 0  # idle samples not recorded

    @property
    def left_out_seconds(self) -> float:
        return self.left_out / RATE

    def __len__(self) -> int:
        return self._n

    @property
    def seconds(self) -> float:
        return self._n / RATE

    def add(self, user: np.ndarray | None, agent: np.ndarray | None, active: bool = True) -> None:
        """Append one time step; the shorter (or missing) side is padded with silence. An idle step
        (`active` False) is kept only while its stretch is within `max_idle_s`."""
        u = np.zeros(0, np.float32) if user is None else np.asarray(user, dtype=np.float32).reshape(-1)
        a = np.zeros(0, np.float32) if agent is None else np.asarray(agent, dtype=np.float32).reshape(-1)
        n = max(u.shape[0], a.shape[0])
        if n == 0:
            return
        u, a = np.pad(u, (0, n - u.shape[0])), np.pad(a, (0, n - a.shape[0]))
        if self.max_idle_samples is not None:
            if not active:
                self._idle.append((u, a))
                self._idle_n += n
                while self._idle_n > self.max_idle_samples:  # keep the newest: the next turn's lead-in
                    dropped, _ = self._idle.pop(0)
                    self._idle_n -= dropped.shape[0]
                    self.left_out += dropped.shape[0]
                return
            idle, self._idle, self._idle_n = self._idle, [], 0
            for iu, ia in idle:
                self._append(iu, ia)
        self._append(u, a)

    def _append(self, u: np.ndarray, a: np.ndarray) -> None:
        n = u.shape[0]
        self._user.append(u)
        self._agent.append(a)
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
