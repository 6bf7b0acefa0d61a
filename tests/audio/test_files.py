"""Audio file reading, loudness normalisation, framing and 16-bit WAV output."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.numpy import load_file

from ppx_desktop.audio.files import (
    AudioFileError,
    frames,
    normalize_loudness,
    read_audio,
    to_pcm16,
    write_wav_pcm16,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SR = 24000


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    n = np.arange(round(rate * seconds))
    return (amp * np.sin(2 * np.pi * freq * n / rate)).astype(np.float32)


def _dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# ---------------------------------------------------------------------------------- read_audio


def test_read_pcm16_maps_value_over_32768(tmp_path: Path) -> None:
    ints = np.array([0, 1, -1, 16384, -16384, 32767, -32768, 1234], dtype=np.int16)
    p = tmp_path / "pcm16.wav"
    sf.write(p, ints, SR, subtype="PCM_16")
    x = read_audio(p)
    assert x.dtype == np.float32 and x.shape == (8,)
    np.testing.assert_array_equal(x, ints.astype(np.float32) / np.float32(32768))


def test_read_float32_is_lossless(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(SR)).astype(np.float32)
    p = tmp_path / "f32.wav"
    sf.write(p, y, SR, subtype="FLOAT")
    x = read_audio(p)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, y)


def test_read_fixture_voice(tmp_path: Path) -> None:
    x = read_audio(FIXTURES / "tiny_voice.wav")
    assert x.shape == (36000,) and x.dtype == np.float32


def test_read_flac(tmp_path: Path) -> None:
    y = _sine(300, SR, 0.5)
    p = tmp_path / "a.flac"
    sf.write(p, y, SR, subtype="PCM_16")
    x = read_audio(p)
    assert x.shape == y.shape
    np.testing.assert_allclose(x, y, atol=1 / 32768 + 1e-7)


def test_read_stereo_is_averaged(tmp_path: Path) -> None:
    left = _sine(440, SR, 0.25)
    right = np.float32(0.25) * np.ones_like(left)
    p = tmp_path / "stereo.wav"
    sf.write(p, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    x = read_audio(p)
    assert x.shape == left.shape and x.dtype == np.float32
    np.testing.assert_allclose(x, (left.astype(np.float64) + right) / 2, atol=1e-7)


def test_read_48k_is_resampled_keeping_frequency(tmp_path: Path) -> None:
    y = _sine(1000, 48000, 1.0)
    p = tmp_path / "48k.wav"
    sf.write(p, y, 48000, subtype="PCM_16")
    x = read_audio(p)
    assert x.dtype == np.float32
    assert x.shape == (24000,)
    assert abs(_dominant_freq(x, SR) - 1000) <= 2
    # Amplitude preserved (ignore the filter edges).
    assert abs(np.abs(x[2000:-2000]).max() - 0.5) < 0.01


def test_read_other_target_rate(tmp_path: Path) -> None:
    p = tmp_path / "24k.wav"
    sf.write(p, _sine(500, SR, 1.0), SR, subtype="FLOAT")
    x = read_audio(p, target_rate=16000)
    assert x.shape == (16000,)
    assert abs(_dominant_freq(x, 16000) - 500) <= 2


def test_read_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match="not found") as ei:
        read_audio(p)
    assert str(p) in str(ei.value)
    with pytest.raises(AudioFileError, match="directory"):
        read_audio(tmp_path)


def test_read_text_file_renamed_wav(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio at all\n" * 10)
    with pytest.raises(AudioFileError, match="Cannot read") as ei:
        read_audio(p)
    msg = str(ei.value)
    assert str(p) in msg and "WAV" in msg
    assert isinstance(ei.value, ValueError)


def test_read_empty_audio(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    with pytest.raises(AudioFileError, match="no audio"):
        read_audio(p)


def test_read_nan_samples(tmp_path: Path) -> None:
    y = _sine(440, SR, 0.1)
    y[10] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, y, SR, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="NaN"):
        read_audio(p)


# --------------------------------------------------------------------------- normalize_loudness


def test_normalize_matches_reference_fixture() -> None:
    golden = load_file(str(FIXTURES / "session_A.safetensors"))["voice_prompt_audio_normalized"]
    assert golden.shape == (1, 36000) and golden.dtype == np.float64
    y = normalize_loudness(read_audio(FIXTURES / "tiny_voice.wav"))
    assert y.dtype == np.float64 and y.shape == (36000,)
    np.testing.assert_allclose(y, golden[0], rtol=0, atol=1e-6)
    # Observed: ~1.3e-9 (the measured loudness differs by ~8e-8 dB between NumPy builds).
    assert np.abs(y - golden[0]).max() < 1e-8
    # What the encoder sees after the per-frame float32 cast.
    f = frames(y)
    g = frames(golden[0])
    assert f.shape == (19, 1920)
    assert np.abs(f - g).max() <= 2 * np.finfo(np.float32).eps


def test_normalize_reaches_target_loudness() -> None:
    import pyloudnorm

    rng = np.random.default_rng(1)
    x = (0.05 * rng.standard_normal(SR * 2)).astype(np.float32)
    for target in (-24.0, -16.0):
        y = normalize_loudness(x, SR, target)
        assert abs(pyloudnorm.Meter(SR).integrated_loudness(y) - target) < 1e-6
    # [1, T] input is accepted.
    np.testing.assert_array_equal(normalize_loudness(x[None, :]), normalize_loudness(x))


def test_normalize_silent_and_short() -> None:
    with pytest.raises(AudioFileError, match="silent"):
        normalize_loudness(np.zeros(SR, dtype=np.float32))
    with pytest.raises(AudioFileError, match="silent"):
        normalize_loudness(np.full(SR, 1e-6, dtype=np.float32))  # below the -70 LUFS gate
    with pytest.raises(AudioFileError, match="too short"):
        normalize_loudness(_sine(440, SR, 0.3))
    with pytest.raises(AudioFileError, match="mono"):
        normalize_loudness(np.zeros((2, SR), dtype=np.float32))


# ------------------------------------------------------------------------------------- frames


def test_frames_split_and_pad() -> None:
    x = np.arange(1, 1920 * 2 + 101, dtype=np.float32)
    f = frames(x)
    assert f.shape == (3, 1920) and f.dtype == np.float32
    np.testing.assert_array_equal(f.reshape(-1)[: x.size], x)
    assert not f[2, 100:].any()
    assert frames(np.ones(3840, dtype=np.float32)).shape == (2, 1920)
    assert frames(np.zeros(0, dtype=np.float32)).shape == (0, 1920)
    assert frames(np.ones(5, dtype=np.float32), frame_size=2).shape == (3, 2)


def test_frames_float64_cast_like_reference() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(4000)  # float64
    f = frames(x)
    assert f.dtype == np.float32
    # Reference: slice, pad with float64 zeros, then torch.tensor(..., dtype=float32) per frame.
    ref_last = np.concatenate([x[3840:], np.zeros(1920 - 160)]).astype(np.float32)
    np.testing.assert_array_equal(f[2], ref_last)
    np.testing.assert_array_equal(f[0], x[:1920].astype(np.float32))


# ---------------------------------------------------------------------------- write_wav_pcm16


def test_to_pcm16_clamps_and_truncates() -> None:
    x = np.array([0.0, 1.0, -1.0, 1.5, -2.0, 0.5, -0.5, 0.99999, -0.99999, 1e-5, -1e-5, np.nan, np.inf, -np.inf],
                 dtype=np.float32)
    expected = np.array([0, 32767, -32767, 32767, -32767, 16383, -16383, 32766, -32766, 0, 0, 0, 32767, -32767],
                        dtype=np.int16)
    np.testing.assert_array_equal(to_pcm16(x), expected)


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.3, 1.3, size=5000).astype(np.float32)
    p = tmp_path / "out.wav"
    assert write_wav_pcm16(p, x) == p
    with wave.open(str(p), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, SR, 5000)
    assert p.stat().st_size == 44 + 2 * 5000
    info = sf.info(p)
    assert info.subtype == "PCM_16" and info.samplerate == SR and info.channels == 1
    back, rate = sf.read(p, dtype="int16")
    assert rate == SR
    expected = np.trunc(np.clip(x, -1, 1) * np.float32(32767)).astype(np.int16)
    np.testing.assert_array_equal(back, expected)
    assert back.max() == 32767 and back.min() == -32767  # clipped
    # Truncation toward zero, not rounding: 0.5 * 32767 = 16383.5 -> 16383 and -16383.
    write_wav_pcm16(p, np.array([0.5, -0.5, 0.99999], dtype=np.float32), rate=16000)
    back, rate = sf.read(p, dtype="int16")
    assert rate == 16000
    np.testing.assert_array_equal(back, [16383, -16383, 32766])
    # Read back through read_audio: value / 32768.
    np.testing.assert_array_equal(read_audio(p, target_rate=16000), back.astype(np.float32) / 32768)
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_accepts_1xT_and_rejects_stereo(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    write_wav_pcm16(tmp_path / "a.wav", x[None, :])
    assert sf.info(tmp_path / "a.wav").frames == 100
    with pytest.raises(AudioFileError, match="mono"):
        write_wav_pcm16(tmp_path / "b.wav", np.zeros((2, 100), dtype=np.float32))
    assert not (tmp_path / "b.wav").exists()


def test_write_failure_leaves_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "keep.wav"
    write_wav_pcm16(p, np.full(10, 0.25, dtype=np.float32))
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wave.Wave_write, "writeframes", boom)
    with pytest.raises(AudioFileError, match="No space left"):
        write_wav_pcm16(p, np.zeros(1000, dtype=np.float32))
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.wav"]


def test_write_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="does not exist"):
        write_wav_pcm16(tmp_path / "no" / "such" / "out.wav", np.zeros(10, dtype=np.float32))


# ------------------------------------------------------- read_audio: bounds checked from the header


def test_a_header_declaring_1_hz_is_refused_before_converting(tmp_path: Path) -> None:
    p = tmp_path / "1hz.wav"
    sf.write(p, np.zeros(100_000, np.int16), 1, subtype="PCM_16")  # 200 KB; resampled it asked for ~10 GB
    with pytest.raises(AudioFileError, match="declares a sample rate of 1 Hz") as ei:
        read_audio(p)
    assert str(p) in str(ei.value)


def test_a_recording_longer_than_the_bound_is_refused_and_keep_seconds_trims(tmp_path: Path) -> None:
    p = tmp_path / "long.wav"
    sf.write(p, _sine(200, 48000, 12.0), 48000, subtype="PCM_16")
    with pytest.raises(AudioFileError, match=r"12\.0 s long; at most 10\.0 s"):
        read_audio(p, max_seconds=10.0)
    notes: list[str] = []
    x = read_audio(p, max_seconds=None, keep_seconds=5.0, notes=notes)
    assert x.shape == (5 * SR,)
    assert notes == ["used the first 5.0 s of the 12.0 s recording", "resampled it from 48000 Hz to 24000 Hz"]


def test_96k_8_bit_stereo_is_read_and_said_so(tmp_path: Path) -> None:
    p = tmp_path / "odd.wav"
    tone = _sine(300, 96000, 1.0)
    sf.write(p, np.stack([tone, tone], axis=1), 96000, subtype="PCM_U8")
    notes: list[str] = []
    x = read_audio(p, notes=notes)
    assert x.shape == (SR,) and abs(_dominant_freq(x, SR) - 300) <= 2
    assert notes == ["mixed its 2 channels to mono", "resampled it from 96000 Hz to 24000 Hz",
                     "it holds 8-bit samples, which add audible noise; a 16-bit recording works better"]


def test_block_wise_resampling_equals_one_shot(tmp_path: Path) -> None:
    import soxr

    from ppx_desktop.audio import files

    rng = np.random.default_rng(1)
    y = (0.2 * rng.standard_normal(44100 * 3 + 17)).astype(np.float32)
    p = tmp_path / "n.wav"
    sf.write(p, y, 44100, subtype="FLOAT")
    one_shot = soxr.resample(y, 44100, SR, quality="VHQ")
    old, files.READ_BLOCK = files.READ_BLOCK, 10_000  # many blocks
    try:
        np.testing.assert_array_equal(read_audio(p), one_shot)
    finally:
        files.READ_BLOCK = old
