"""Audio files: reading user/voice recordings, loudness normalisation, framing and WAV output.

Everything here works on NumPy arrays at the model rate (24 kHz) and follows the reference's
offline flow (``moshi/offline.py`` and the voice-prompt loader in ``moshi/models/lm.py``):

* :func:`read_audio` — any file soundfile can read (WAV, FLAC, OGG, ...) as float32 mono.
  16-bit PCM maps to ``value / 32768``, as in the reference's reader. **Multi-channel input is
  averaged to mono**; the reference keeps channel 0 only (and its loudness step breaks on stereo
  voice prompts), so for mono files, the supported case, both agree exactly. Other sample rates are
  resampled with soxr (VHQ). The reference resamples with a different library (rubato via sphn),
  which delays and lengthens the signal slightly, so only 24 kHz input is bit-compatible.
* :func:`normalize_loudness` — ITU-R BS.1770-4 integrated loudness (pyloudnorm) and a gain to
  -24 LUFS, returning **float64** as the reference does.
* :func:`frames` — 1920-sample frames, last one zero padded, cast to float32 per frame.
* :func:`write_wav_pcm16` — mono 16-bit PCM WAV like the reference's writer, written atomically.

No torch and no Qt here.
"""

from __future__ import annotations

import os
import secrets
import wave
from pathlib import Path

import numpy as np

__all__ = [
    "AudioFileError",
    "frames",
    "normalize_loudness",
    "read_audio",
    "to_pcm16",
    "write_wav_pcm16",
]

MODEL_RATE = 24_000
FRAME_SIZE = 1920
LOUDNESS_BLOCK_SECONDS = 0.4  # BS.1770 gating block; pyloudnorm needs at least one


class AudioFileError(ValueError):
    """An audio file or recording cannot be used; the message says what is wrong and what to do."""


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path))


def read_audio(path: str | os.PathLike[str], target_rate: int = MODEL_RATE) -> np.ndarray:
    """Read an audio file as float32 mono at ``target_rate``; shape ``[T]``.

    Multi-channel files are averaged to mono. Files at another rate are resampled with soxr (VHQ).
    Raises :class:`AudioFileError` for a missing file, a file that is not readable audio, an empty
    recording, or one containing NaN/infinite samples.
    """
    import soundfile as sf

    p = _as_path(path)
    if not p.exists():
        raise AudioFileError(f"Audio file {p} not found; check the path and try again.")
    if p.is_dir():
        raise AudioFileError(f"{p} is a directory; choose an audio file (WAV, FLAC or OGG).")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, TypeError, ValueError) as e:
        raise AudioFileError(
            f"Cannot read {p} as audio ({e}). Use a WAV, FLAC or OGG file, or convert the file first."
        ) from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioFileError(f"{p} contains no audio (0 samples); record or choose another file.")
    if data.shape[1] == 1:
        x = np.ascontiguousarray(data[:, 0])
    else:
        x = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioFileError(f"{p} contains NaN or infinite samples; the file is damaged, re-export it.")
    if int(rate) != int(target_rate):
        import soxr

        x = np.asarray(soxr.resample(x, int(rate), int(target_rate), quality="VHQ"), dtype=np.float32)
        if x.shape[0] == 0:
            raise AudioFileError(f"{p} is too short to resample from {rate} Hz to {target_rate} Hz.")
    return x


def _mono_1d(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 1:
        raise AudioFileError(f"{what} expects mono audio of shape [T] or [1, T], got shape {tuple(a.shape)}.")
    return a


def normalize_loudness(x: np.ndarray, rate: int = MODEL_RATE, target_lufs: float = -24.0) -> np.ndarray:
    """Scale mono audio to ``target_lufs`` integrated loudness (ITU-R BS.1770-4, pyloudnorm).

    Same computation as the reference's voice-prompt loader: the meter sees the samples as given
    (float32 from :func:`read_audio`), the gain is ``10 ** ((target - L) / 20)`` in float64, and the
    product is **float64** (what pyloudnorm returns under NumPy 2; frames are cast to float32 later,
    see :func:`frames`). No clipping is applied. Input ``[1, T]`` is accepted and gives ``[T]``.

    Raises :class:`AudioFileError` if the recording is shorter than one 400 ms loudness block or
    silent (loudness -inf, i.e. nothing above the -70 LUFS absolute gate).
    """
    import pyloudnorm

    a = _mono_1d(x, "normalize_loudness")
    if not np.issubdtype(a.dtype, np.floating):
        raise AudioFileError(f"normalize_loudness expects floating-point samples, got {a.dtype}.")
    min_len = LOUDNESS_BLOCK_SECONDS * rate
    if a.shape[0] < min_len:
        raise AudioFileError(
            f"The recording is too short ({a.shape[0] / rate:.2f} s) to measure its loudness; "
            f"use at least {LOUDNESS_BLOCK_SECONDS:g} s of speech (a few seconds is best)."
        )
    meter = pyloudnorm.Meter(rate)
    try:
        loudness = meter.integrated_loudness(a)
    except ValueError as e:  # pyloudnorm's own length/format checks
        raise AudioFileError(f"The recording is too short or malformed to measure its loudness ({e}).") from e
    if not np.isfinite(loudness):
        raise AudioFileError(
            "The recording is silent (or too quiet to measure); record again closer to the microphone."
        )
    gain = np.power(10.0, (float(target_lufs) - loudness) / 20.0)
    return np.float64(gain) * a.astype(np.float64, copy=False)


def frames(x: np.ndarray, frame_size: int = FRAME_SIZE) -> np.ndarray:
    """Split mono audio into ``[N, frame_size]`` float32 frames from the start.

    The last partial frame is zero padded (in the input dtype, then everything is cast to float32,
    exactly like the reference's per-frame cast of float64 voice audio). Empty input gives ``[0, frame_size]``.
    """
    a = _mono_1d(x, "frames")
    if frame_size <= 0:
        raise ValueError(f"frame_size must be positive, got {frame_size}")
    n = -(-a.shape[0] // frame_size)
    buf = np.zeros(n * frame_size, dtype=a.dtype)
    buf[: a.shape[0]] = a
    return buf.reshape(n, frame_size).astype(np.float32)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples to int16 like the reference writer: clamp to [-1, 1], times 32767, truncate toward 0.

    float64 input is converted in float64, anything else in float32; NaN becomes 0.
    """
    a = np.asarray(x)
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    a = np.clip(a.astype(dtype, copy=False), -1.0, 1.0)
    a = np.where(np.isnan(a), dtype(0.0), a)
    return (a * dtype(32767.0)).astype(np.int16)


def write_wav_pcm16(path: str | os.PathLike[str], x: np.ndarray, rate: int = MODEL_RATE) -> Path:
    """Write mono 16-bit PCM WAV (44-byte header) atomically: temp file, then ``os.replace``.

    Samples are converted with :func:`to_pcm16`. On any failure the destination is left untouched
    and the temporary file is removed.
    """
    p = _as_path(path)
    pcm = to_pcm16(_mono_1d(x, "write_wav_pcm16"))
    if int(rate) <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise AudioFileError(f"Cannot write {p}: the folder {parent} does not exist; create it or choose another.")
    tmp = parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # os.open with mode 0o666 honours the umask (tempfile.mkstemp would force 0o600).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:
        raise AudioFileError(f"Cannot write {p}: {e}. Choose a folder you can write to.") from e
    try:
        with os.fdopen(fd, "wb") as f:
            with wave.open(f, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(int(rate))
                w.writeframes(pcm.astype("<i2", copy=False).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise AudioFileError(f"Cannot write {p}: {e}. Check free disk space and permissions.") from e
        raise
    return p
