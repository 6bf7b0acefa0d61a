"""Downloading the speech-to-text repository through the verified Hub download (local fake Hub)."""

from __future__ import annotations

import json

import pytest
from hub_server import FakeHub
from testkit import FIXTURES

from ppx_desktop.assets import hub
from ppx_desktop.assets.hub import NotFoundError, check_model_dir, find_model_dir
from ppx_desktop.assets.stt_model import download_stt, find_stt_dir, stt_files
from ppx_desktop.cli import main
from ppx_desktop.engine.stt_config import STT_REPO, load_stt_config


def stt_repo_files() -> dict[str, bytes]:
    """The released file names; a config in the reference's format (tiny widths, the released codec)."""
    config = json.loads((FIXTURES / "stt" / "config.json").read_text())
    for key in ("mimi_config_name", "moshi_name"):
        config.pop(key)
    config.update(mimi_name="mimi-pytorch-e351c8d8@125.safetensors", tokenizer_name="tokenizer_en_fr_audio_8000.model",
                  card=2048, stt_config={"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0})
    return {"config.json": json.dumps(config).encode(), "model.safetensors": b"w" * 5000,
            "mimi-pytorch-e351c8d8@125.safetensors": b"m" * 3000, "tokenizer_en_fr_audio_8000.model": b"t" * 700,
            "README.md": b"# Kyutai STT\n"}


@pytest.fixture
def stt_hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "RETRY_WAIT", 0.0)
    server = FakeHub(stt_repo_files(), repo=STT_REPO).start()
    yield server
    server.stop()


def test_file_list_is_the_released_configs():
    assert stt_files().required == ("config.json", "model.safetensors", "mimi-pytorch-e351c8d8@125.safetensors",
                                    "tokenizer_en_fr_audio_8000.model")
    assert not stt_files().voices


def test_download_verifies_and_is_found_again(stt_hub):
    result = download_stt(endpoint=stt_hub.url)
    files = stt_repo_files()
    for name in stt_files().required:
        assert (result.model_dir / name).read_bytes() == files[name]
    assert not (result.model_dir / "README.md").exists()  # only what the model needs
    assert not (result.model_dir / "voices").exists()
    assert check_model_dir(result.model_dir, STT_REPO, files=stt_files()) == []
    assert find_stt_dir() == result.model_dir
    assert find_model_dir() is None  # PersonaPlex is not there: the two are told apart
    assert load_stt_config(result.model_dir).lm.n_q == 32
    again = download_stt(endpoint=stt_hub.url)
    assert again.already_complete and again.model_dir == result.model_dir


def test_a_config_naming_other_files_is_refused(stt_hub):
    config = json.loads(stt_hub.files["config.json"])
    config["tokenizer_name"] = "tokenizer_other.model"
    stt_hub.files["config.json"] = json.dumps(config).encode()
    with pytest.raises(NotFoundError, match="tokenizer_other.model"):
        download_stt(endpoint=stt_hub.url)


def test_missing_repository_file_is_named(stt_hub):
    del stt_hub.files["tokenizer_en_fr_audio_8000.model"]
    with pytest.raises(NotFoundError, match="tokenizer_en_fr_audio_8000.model"):
        download_stt(endpoint=stt_hub.url)


def test_transcribe_without_a_download_says_how(tmp_path, capsys):
    assert main(["transcribe", "--input-wav", str(FIXTURES / "stt" / "speech.wav"),
                 "--output-text", str(tmp_path / "w.json")]) == 1
    assert "download --with-transcription" in capsys.readouterr().err


def test_download_command_with_transcription(stt_hub, monkeypatch, tmp_path, capsys):
    """`download --with-transcription --dir D`: PersonaPlex into D (stubbed here: its own tests cover
    it), the speech-to-text model into D/stt, from the Hub at HF_ENDPOINT."""
    monkeypatch.setenv("HF_ENDPOINT", stt_hub.url)
    calls = []

    def fake_personaplex(**kwargs):
        calls.append(kwargs)
        return hub.DownloadResult("nvidia/personaplex-7b-v1", "c" * 40, tmp_path / "d", already_complete=True)

    monkeypatch.setattr(hub, "download_model", fake_personaplex)
    assert main(["download", "--dir", str(tmp_path / "d"), "--with-transcription"]) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1 and f"downloaded {STT_REPO}" in out and str(tmp_path / "d" / "stt") in out
    assert load_stt_config(tmp_path / "d" / "stt").tokenizer_name == "tokenizer_en_fr_audio_8000.model"


def test_status_reports_the_transcription_model(tiny_model_dir, capsys):
    main(["status", "--model-dir", str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert f"transcription: {tiny_model_dir / 'stt'}" in out and "tokenizer_tiny_stt.model" in out
    assert "GPU memory it adds in bfloat16" in out and "24-frame attention cache" in out


def test_status_says_how_to_get_it(tmp_path):
    from ppx_desktop.assets.stt_model import transcription_status

    (line,) = transcription_status(tmp_path)
    assert "is not downloaded" in line and "download --with-transcription" in line
    assert "about 2.1 GB more GPU memory in bfloat16" in line  # 0.98 B parameters plus a 750-frame cache
