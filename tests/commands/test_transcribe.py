"""`ppx-desktop transcribe`: the reference's words for the tiny model, and clear errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
from testkit import FIXTURES

from ppx_desktop.cli import main

STT = FIXTURES / "stt"


def transcribe(*args) -> int:
    return main(["transcribe", *map(str, args)])


def test_writes_the_reference_words(tmp_path, capsys):
    out = tmp_path / "words.json"
    assert transcribe("--stt-model-dir", STT, "--input-wav", STT / "speech.wav", "--output-text", out,
                      "--greedy", "--device", "cpu", "--dtype", "float32") == 0
    assert json.loads(out.read_text()) == json.loads((STT / "words.json").read_text())
    assert f"wrote 15 words to {out}" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.partial"))


def test_stereo_at_another_rate(tmp_path):
    """Any rate, mono or stereo: averaged to mono, resampled to 24 kHz, then transcribed."""
    rate = 16_000
    t = np.arange(rate * 2) / rate
    left = 0.3 * np.sin(2 * np.pi * 220 * t) * (t < 1.2)
    pcm = (np.stack([left, 0.5 * left], 1) * 32767).astype("<i2")
    wav = tmp_path / "stereo.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    out = tmp_path / "w.json"
    assert transcribe("--stt-model-dir", STT, "--input-wav", wav, "--output-text", out) == 0
    words = json.loads(out.read_text())
    assert isinstance(words, list)
    assert all(set(w) == {"word", "start", "end"} and 0 <= w["start"] <= w["end"] <= 2.0 for w in words)


def test_the_tiny_model_directory_holds_one(tiny_model_dir, tmp_path):
    out = tmp_path / "w.json"
    assert transcribe("--stt-model-dir", tiny_model_dir / "stt", "--input-wav", STT / "speech.wav",
                      "--output-text", out) == 0
    assert json.loads(out.read_text())  # random weights still emit words


@pytest.mark.parametrize("setup, message", [
    pytest.param("missing-wav", "not found; check the path", id="missing-input"),
    pytest.param("not-audio", "Cannot read", id="not-audio"),
    pytest.param("empty-wav", "contains no audio", id="empty-input"),
    pytest.param("no-output-folder", "output folder does not exist", id="output-folder"),
    pytest.param("output-is-folder", "is a folder", id="output-is-folder"),
    pytest.param("no-model", "speech-to-text model directory not found", id="no-model"),
    pytest.param("lm-dir", "has no config.json", id="wrong-directory"),
    pytest.param("no-weights", "missing model.safetensors", id="incomplete-model"),
])
def test_bad_input_gives_one_clear_line(tmp_path, capsys, setup, message):
    wav, out, model = STT / "speech.wav", tmp_path / "w.json", STT
    if setup == "missing-wav":
        wav = tmp_path / "none.wav"
    elif setup == "not-audio":
        wav = tmp_path / "x.wav"
        wav.write_text("hello")
    elif setup == "empty-wav":
        wav = tmp_path / "empty.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(24000)
    elif setup == "no-output-folder":
        out = tmp_path / "missing" / "w.json"
    elif setup == "output-is-folder":
        out = tmp_path
    elif setup == "no-model":
        model = tmp_path / "nowhere"
    elif setup == "lm-dir":
        model = tmp_path
    elif setup == "no-weights":
        model = tmp_path / "stt"
        shutil.copytree(STT, model)
        (model / "model.safetensors").unlink()
    previous = out.read_text() if out.is_file() else None
    assert transcribe("--stt-model-dir", model, "--input-wav", wav, "--output-text", out) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert (out.read_text() if out.is_file() else None) == previous  # nothing written on failure


def test_help_lists_the_command():
    result = subprocess.run([sys.executable, "-m", "ppx_desktop", "transcribe", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "--stt-model-dir" in result.stdout and "--output-text" in result.stdout
