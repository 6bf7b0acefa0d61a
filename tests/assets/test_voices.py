"""Voice catalogue, safe unpacking of voices.tgz, and custom voices made on a tiny model."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from ppx_desktop.assets.voices import (
    ArchiveError,
    create_custom_voice,
    extract_voices,
    list_voices,
    remove_custom_voice,
    resolve_voice_path,
)
from ppx_desktop.engine.prompts import VoiceError, load_voice_file
from ppx_desktop.engine.tiny import synthetic_voice
from ppx_desktop.paths import voices_dir


def make_tgz(path, entries):
    """entries: (name, kind, payload): kind "file" (bytes), "dir", "symlink"/"hardlink" (target), "dev"."""
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "dev": tarfile.CHRTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tar.addfile(info)
    return path


def test_catalogue_lists_the_18_presets_then_unknown_then_custom(tiny_model_dir):
    (voices_dir() / "Mine.pt").write_bytes(b"x")
    voices = list_voices(tiny_model_dir)
    ids = [v.id for v in voices]
    assert ids[:18] == [f"NATF{i}" for i in range(4)] + [f"NATM{i}" for i in range(4)] + \
        [f"VARF{i}" for i in range(5)] + [f"VARM{i}" for i in range(5)]
    assert ids[18:] == ["Mine"] and voices[18].custom and voices[18].family == "custom"
    natf0, varm4 = voices[0], voices[17]
    assert (natf0.gender, natf0.family, natf0.path) == ("female", "natural", tiny_model_dir / "voices" / "NATF0.pt")
    assert (varm4.gender, varm4.family, varm4.path) == ("male", "variety", None)  # not in the tiny model
    assert resolve_voice_path("NATM0", tiny_model_dir) == tiny_model_dir / "voices" / "NATM0.pt"
    assert resolve_voice_path("Mine", tiny_model_dir) == voices_dir() / "Mine.pt"
    with pytest.raises(VoiceError, match="Available: NATF0, NATM0, VARF0, VARM0, Mine"):
        resolve_voice_path("VARM4", tiny_model_dir)


def test_unknown_voice_files_in_the_model_folder_are_listed(tmp_path):
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "EXTRA1.pt").write_bytes(b"x")
    extra = [v for v in list_voices(tmp_path) if v.id == "EXTRA1"]
    assert len(extra) == 1 and extra[0].path == tmp_path / "voices" / "EXTRA1.pt" and not extra[0].custom


def test_extracts_only_voice_files(tmp_path):
    archive = make_tgz(tmp_path / "voices.tgz", [
        ("voices", "dir", None), ("voices/NATF0.pt", "file", b"a"), ("./voices/VARM1.pt", "file", b"b"),
        ("voices/README.txt", "file", b"skip"), ("voices/._NATF0.pt", "file", b"skip"), ("other.pt", "file", b"s"),
    ])
    names = extract_voices(archive, tmp_path / "model" / "voices")
    assert names == ["NATF0.pt", "VARM1.pt"]
    assert sorted(p.name for p in (tmp_path / "model" / "voices").iterdir()) == names
    assert (tmp_path / "model" / "voices" / "VARM1.pt").read_bytes() == b"b"


@pytest.mark.parametrize("entry, why", [
    pytest.param(("/tmp/evil.pt", "file", b"x"), "an absolute path", id="absolute"),
    pytest.param(("voices/../../evil.pt", "file", b"x"), r"\.\.", id="dotdot"),
    pytest.param(("voices/LINK.pt", "symlink", "/etc/passwd"), "a link", id="symlink"),
    pytest.param(("voices/HARD.pt", "hardlink", "voices/NATF0.pt"), "a link", id="hardlink"),
    pytest.param(("voices/dev.pt", "dev", None), "a device", id="device"),
])
def test_unsafe_archives_are_refused_whole(tmp_path, entry, why):
    archive = make_tgz(tmp_path / "voices.tgz", [("voices/NATF0.pt", "file", b"a"), entry])
    dest = tmp_path / "model" / "voices"
    with pytest.raises(ArchiveError, match=why):
        extract_voices(archive, dest)
    assert not dest.exists() and not (tmp_path / "model" / "voices.partial").exists()
    assert not (tmp_path.parent / "evil.pt").exists()


def test_archive_without_voices_or_not_an_archive(tmp_path):
    with pytest.raises(ArchiveError, match="holds no voice files"):
        extract_voices(make_tgz(tmp_path / "a.tgz", [("notes.txt", "file", b"x")]), tmp_path / "v")
    (tmp_path / "b.tgz").write_bytes(b"not a tar")
    with pytest.raises(ArchiveError, match="not a readable voice archive"):
        extract_voices(tmp_path / "b.tgz", tmp_path / "v")


def write_wav(path, audio):
    sf.write(str(path), audio, 24000, subtype="FLOAT")
    return path


def speech(seconds: float) -> np.ndarray:
    return np.tile(synthetic_voice(1, seconds=2.0), int(np.ceil(seconds / 2)))[: int(seconds * 24000)]


@pytest.mark.parametrize("audio, words", [
    pytest.param(speech(5.0), "too short", id="short"),
    pytest.param(np.zeros(24000 * 12, np.float32), "silent", id="silent"),
    pytest.param(np.clip(speech(12.0) * 20, -1, 1), "clipped", id="clipped"),
])
def test_bad_recordings_are_refused(tmp_path, tiny_model, audio, words):
    with pytest.raises(VoiceError, match=words):
        create_custom_voice(tiny_model, "Me", write_wav(tmp_path / "r.wav", audio), consent=True)
    assert not list(voices_dir().iterdir())


def test_consent_name_and_overwrite_rules(tmp_path, tiny_model):
    wav = tmp_path / "r.wav"
    with pytest.raises(VoiceError, match="consent"):
        create_custom_voice(tiny_model, "Me", wav, consent=False)
    with pytest.raises(VoiceError, match="invalid voice name"):
        create_custom_voice(tiny_model, "../x", wav, consent=True)
    with pytest.raises(VoiceError, match="name of a preset"):
        create_custom_voice(tiny_model, "natf0", wav, consent=True)
    (voices_dir() / "Me.pt").write_bytes(b"old")
    with pytest.raises(VoiceError, match="already exists"):
        create_custom_voice(tiny_model, "Me", wav, consent=True)
    assert remove_custom_voice("Me") == voices_dir() / "Me.pt" and not (voices_dir() / "Me.pt").exists()
    with pytest.raises(VoiceError, match="no custom voice named 'Me'"):
        remove_custom_voice("Me")


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    from ppx_desktop.engine.model import load_model

    return load_model(tiny_model_dir, device="cpu")


def test_custom_voice_matches_the_preset_format(tmp_path, tiny_model):
    seen = []
    path = create_custom_voice(tiny_model, "Me", write_wav(tmp_path / "r.wav", speech(10.5)), consent=True,
                               progress=lambda d, t: seen.append((d, t)))
    assert path == voices_dir() / "Me.pt"
    voice = load_voice_file(path, dim=tiny_model.config.lm.dim)
    preset = torch.load(tiny_model_dir_voice(tiny_model), weights_only=True)
    frames = int(np.ceil(10.5 * 24000 / 1920))
    assert voice.embeddings.shape == (frames - 1, 1, 1, tiny_model.config.lm.dim)
    assert voice.cache.shape == preset["cache"].shape and voice.cache.dtype == torch.long
    assert voice.embeddings.dtype == preset["embeddings"].dtype
    assert seen[-1] == (frames, frames)
    assert [v.id for v in list_voices(tiny_model.model_dir) if v.custom] == ["Me"]


def test_a_long_48k_recording_is_cut_and_said_so(tmp_path, tiny_model):
    """To 30 s, or 60 % of the model's context when that is shorter (the tiny model's: 12.3 s)."""
    wav = tmp_path / "long.wav"
    audio = speech(90.0)
    sf.write(str(wav), np.repeat(audio, 2), 48000, subtype="PCM_16")  # 90 s at 48 kHz
    notes = []
    path = create_custom_voice(tiny_model, "Long", wav, consent=True, notes=notes)
    voice = load_voice_file(path, dim=tiny_model.config.lm.dim)
    kept = int(0.6 * 256 / 12.5 * 24000)  # samples in 60 % of the 256-frame context
    assert len(voice.embeddings) == int(np.ceil(kept / 1920)) - 1
    assert notes == ["used the first 12.3 s of the 90.0 s recording", "resampled it from 48000 Hz to 24000 Hz"]


def tiny_model_dir_voice(model):
    return model.model_dir / "voices" / "NATF0.pt"
