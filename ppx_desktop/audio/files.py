"""Audio files: reading user/voice recordings, loudness normalisation, framing and WAV output.

Everything here works on NumPy arrays at the model rate (24 kHz) and follows the reference's
offline flow (``moshi/offline.py`` and the voice-prompt loader in ``moshi/models/lm.py``):

* :func:`read_audio` — any file soundfile can read (WAV, FLAC, OGG, ...) as float32 mono, with
  its rate and length checked from the header before anything is converted.
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
    "encode_wav_pcm16",
    "frames",
    "normalize_loudness",
    "read_audio",
    "to_pcm16",
    "write_wav_pcm16",
]

MODEL_RATE = 24_000
FRAME_SIZE = 1920
LOUDNESS_BLOCK_SECONDS = 0.4  # BS.1770 gating block; pyloudnorm needs at least one
# What a recording can declare: telephone to studio rates. A header outside these is damaged or
# hostile (1 Hz made the resampler ask for 10 GB for a 200 KB file).
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 32
MAX_SECONDS = 20 * 60.0  # the longest input read by default: 20 minutes (5 times the model's context)
READ_BLOCK = 1 << 18  # frames per read: memory stays near the (resampled) output
LOW_RESOLUTION = {"PCM_S8": "8-bit", "PCM_U8": "8-bit", "ULAW": "8-bit mu-law", "ALAW": "8-bit A-law",
                  "IMA_ADPCM": "4-bit ADPCM", "MS_ADPCM": "4-bit ADPCM", "GSM610": "GSM-compressed"}


class AudioFileError(ValueError):
    """An audio file or recording cannot be used; the message says what is wrong and what to do."""


def _as_path(path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(path))


def read_audio(path: str | os.PathLike[str], target_rate: int = MODEL_RATE, *,
               max_seconds: float | None = MAX_SECONDS, keep_seconds: float | None = None,
               notes: list[str] | None = None) -> np.ndarray:
    """Read an audio file as float32 mono at ``target_rate``; shape ``[T]``.

    Multi-channel files are averaged to mono. Files at another rate are resampled with soxr (VHQ),
    block by block (bit-identical to a one-shot resample), so memory stays near the output's size.
    The header is checked before any sample is converted: a sample rate outside
    ``MIN_RATE..MAX_RATE`` (a damaged or mislabelled file) or a recording longer than
    ``max_seconds`` is refused. ``keep_seconds`` uses only the start of a longer recording.
    What was done that the user may want to know (trimmed, resampled, mixed down, 8-bit source)
    is appended to ``notes`` as sentences.

    Raises :class:`AudioFileError` for a missing file, a file that is not readable audio, an empty
    recording, one containing NaN/infinite samples, or one outside those bounds.
    """
    import soundfile as sf

    p = _as_path(path)
    if not p.exists():
        raise AudioFileError(f"Audio file {p} not found; check the path and try again.")
    if p.is_dir():
        raise AudioFileError(f"{p} is a directory; choose an audio file (WAV, FLAC or OGG).")
    unreadable = (sf.SoundFileError, RuntimeError, OSError, TypeError, ValueError)
    try:
        info = sf.info(str(p))
    except unreadable as e:
        raise AudioFileError(
            f"Cannot read {p} as audio ({e}). Use a WAV, FLAC or OGG file, or convert the file first."
        ) from e
    rate, channels, total = int(info.samplerate), int(info.channels), int(info.frames)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFileError(
            f"{p} declares a sample rate of {rate} Hz; recordings use {MIN_RATE} to {MAX_RATE} Hz, so the file "
            "is damaged or mislabelled. Re-export it (for example as a 48000 Hz WAV)."
        )
    if total <= 0 or channels <= 0:
        raise AudioFileError(f"{p} contains no audio (0 samples); record or choose another file.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioFileError(f"{p} declares {channels} channels; use a mono or stereo recording.")
    seconds = total / rate
    if max_seconds is not None and seconds > max_seconds:
        raise AudioFileError(
            f"{p} is {_duration(seconds)} long; at most {_duration(max_seconds)} can be used here. "
            "Cut it into shorter pieces."
        )
    limit = total if keep_seconds is None else min(total, int(keep_seconds * rate))
    try:
        x = _read_mono(p, rate, limit, int(target_rate))
    except AudioFileError:
        raise
    except unreadable as e:
        raise AudioFileError(
            f"Cannot read {p} as audio ({e}). Use a WAV, FLAC or OGG file, or convert the file first."
        ) from e
    if x.shape[0] == 0:
        raise AudioFileError(f"{p} is too short to resample from {rate} Hz to {target_rate} Hz.")
    if notes is not None:
        if limit < total:
            notes.append(f"used the first {_duration(limit / rate)} of the {_duration(seconds)} recording")
        if channels > 1:
            notes.append(f"mixed its {channels} channels to mono")
        if rate != int(target_rate):
            notes.append(f"resampled it from {rate} Hz to {int(target_rate)} Hz")
        if info.subtype in LOW_RESOLUTION:
            notes.append(f"it holds {LOW_RESOLUTION[info.subtype]} samples, which add audible noise; a 16-bit "
                         "recording works better")
    return x


def _read_mono(p: Path, rate: int, limit: int, target_rate: int) -> np.ndarray:
    """The first ``limit`` frames, mixed to mono block by block and resampled as a stream."""
    import soundfile as sf

    stream = None
    if rate != target_rate:
        import soxr

        stream = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="VHQ")
    out = []
    try:
        with sf.SoundFile(str(p)) as f:
            left = limit
            while left > 0:
                block = f.read(min(left, READ_BLOCK), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                left -= block.shape[0]
                mono = (np.ascontiguousarray(block[:, 0]) if block.shape[1] == 1
                        else block.mean(axis=1, dtype=np.float64).astype(np.float32))
                if not np.all(np.isfinite(mono)):
                    raise AudioFileError(f"{p} contains NaN or infinite samples; the file is damaged, re-export it.")
                out.append(mono if stream is None else stream.resample_chunk(mono))
        if stream is not None:
            out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    finally:
        del stream  # soxr's nanobind objects: never left for the interpreter's exit (it reports leaks)
    if not out:
        return np.zeros(0, np.float32)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} minutes"


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


def encode_wav_pcm16(x: np.ndarray, rate: int = MODEL_RATE) -> bytes:
    """The bytes :func:`write_wav_pcm16` writes (mono 16-bit PCM, 44-byte header), for callers
    that write several files all or nothing (commands/outputs.py)."""
    import io

    pcm = to_pcm16(_mono_1d(x, "encode_wav_pcm16"))
    if int(rate) <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


def wav_pcm16_size(samples: int) -> int:
    """Bytes of a mono 16-bit WAV of `samples` samples."""
    return 44 + 2 * int(samples)


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
