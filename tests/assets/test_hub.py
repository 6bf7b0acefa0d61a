"""Downloads run for real against a local server speaking the Hub's protocol (tests/assets/hub_server.py)."""

from __future__ import annotations

import errno
import io
import os
import socket
import stat
import tarfile
import threading

import pytest
from hub_server import FakeHub

from ppx_desktop.assets import hub
from ppx_desktop.assets.hub import (
    AccessDeniedError,
    ChecksumError,
    DiskSpaceError,
    DownloadCancelled,
    NetworkError,
    NotFoundError,
    TokenInvalidError,
    TokenMissingError,
    check_model_dir,
    current_token,
    download_model,
    find_model_dir,
    store_token,
)

VOICES = ("NATF0", "NATM0", "VARF0", "VARM0")


def voices_tgz(entries: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (entries or {f"voices/{v}.pt": v.encode() * 50 for v in VOICES}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _model_files() -> dict[str, bytes]:
    return {
        "model.safetensors": bytes(range(256)) * 256,  # 64 KiB
        "tokenizer-e351c8d8-checkpoint125.safetensors": b"mimi" * 3000,
        "tokenizer_spm_32k_3.model": b"spm" * 1000,
        "voices.tgz": voices_tgz(),
        "config.json": b'{"model_type": "personaplex"}\n',
    }


FILES = _model_files()  # built once: gzip stamps the time, so the archive's bytes differ per build


def model_files() -> dict[str, bytes]:
    return dict(FILES)


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "RETRY_WAIT", 0.0)
    server = FakeHub(model_files()).start()
    yield server
    server.stop()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_full_download_into_the_cache_via_cdn(fake_hub):
    fake_hub.cdn = True
    calls = []
    result = download_model(endpoint=fake_hub.url, token="hf_good", progress=lambda *a: calls.append(a))
    files = model_files()
    model_dir = result.model_dir
    assert model_dir.parent.name == "snapshots" and model_dir.name == fake_hub.commit
    for name, data in files.items():
        assert (model_dir / name).read_bytes() == data
    assert (model_dir / "model.safetensors").is_symlink()  # the Hub cache's layout: links into blobs/
    assert (model_dir.parent.parent / "refs" / "main").read_text() == fake_hub.commit
    assert sorted(p.name for p in (model_dir / "voices").iterdir()) == [f"{v}.pt" for v in VOICES]
    assert (model_dir / "voices" / "NATF0.pt").read_bytes() == b"NATF0" * 50
    assert check_model_dir(model_dir, fake_hub.repo, fake_hub.commit) == []
    assert find_model_dir() == model_dir
    total = sum(len(d) for d in files.values())
    assert result.bytes_downloaded == total and calls[-1][:2] == (total, total)
    assert all(done <= tot for done, tot, _, _ in calls)
    # LFS bytes came from the CDN origin, without the token; the Hub itself got it.
    cdn = [r for r in fake_hub.log if r.server == "cdn"]
    assert len(cdn) == 4 and all(r.auth is None for r in cdn)
    assert all(r.auth == "hf_good" for r in fake_hub.log if r.server == "hub")


def test_dropped_connection_is_resumed_with_range(fake_hub, tmp_path):
    size = len(model_files()["model.safetensors"])
    fake_hub.drop_after["model.safetensors"] = size // 3
    result = download_model(endpoint=fake_hub.url, local_dir=tmp_path / "m", token="hf_good")
    assert (result.model_dir / "model.safetensors").read_bytes() == model_files()["model.safetensors"]
    gets = [r.range for r in fake_hub.requests("GET", "model.safetensors")]
    assert gets == [None, f"bytes={size // 3}-"]
    assert fake_hub.served["model.safetensors"] == size  # nothing fetched twice
    assert not list((tmp_path / "m").glob("*.incomplete"))


def test_cancelled_download_continues_on_the_next_run(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "CHUNK_SIZE", 4096)
    cancel = threading.Event()

    def progress(done, total, speed, eta):
        if done > total // 2:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download_model(endpoint=fake_hub.url, local_dir=tmp_path, token="hf_good", progress=progress, cancel=cancel)
    partial = tmp_path / "model.safetensors.incomplete"
    kept = partial.stat().st_size
    assert 0 < kept < len(model_files()["model.safetensors"])
    assert not (tmp_path / hub.MARKER).exists() and find_model_dir() is None
    result = download_model(endpoint=fake_hub.url, local_dir=tmp_path, token="hf_good")
    assert (result.model_dir / "model.safetensors").read_bytes() == model_files()["model.safetensors"]
    assert fake_hub.requests("GET", "model.safetensors")[-1].range == f"bytes={kept}-"
    assert result.bytes_downloaded == len(model_files()["model.safetensors"]) - kept
    assert find_model_dir() == tmp_path


def test_corrupted_file_is_downloaded_again(fake_hub, tmp_path):
    fake_hub.corrupt["model.safetensors"] = 1
    result = download_model(endpoint=fake_hub.url, local_dir=tmp_path, token="hf_good")
    assert (result.model_dir / "model.safetensors").read_bytes() == model_files()["model.safetensors"]
    assert len(fake_hub.requests("GET", "model.safetensors")) == 2


def test_corrupted_file_twice_is_reported_and_never_used(fake_hub, tmp_path):
    fake_hub.corrupt["voices.tgz"] = 2
    with pytest.raises(ChecksumError, match="voices.tgz is corrupted"):
        download_model(endpoint=fake_hub.url, local_dir=tmp_path, token="hf_good")
    assert not (tmp_path / "voices.tgz").exists() and not (tmp_path / "voices.tgz.incomplete").exists()
    assert not (tmp_path / hub.MARKER).exists() and not (tmp_path / "voices").exists()
    assert find_model_dir() is None


@pytest.mark.parametrize("token, error, words", [
    pytest.param(None, TokenMissingError, "needs a Hugging Face token", id="401-no-token"),
    pytest.param("hf_bad", TokenInvalidError, "refused your token", id="401-invalid-token"),
    pytest.param("hf_not_granted", AccessDeniedError, "agree and access", id="403-licence-not-accepted"),
])
def test_gated_repository_errors(fake_hub, token, error, words):
    fake_hub.gated = True
    with pytest.raises(error, match=words) as info:
        download_model(endpoint=fake_hub.url, token=token)
    if error is AccessDeniedError:
        assert f"{fake_hub.url}/nvidia/personaplex-7b-v1" in str(info.value)
    assert not fake_hub.requests("GET", "/resolve/")  # refused before any byte was fetched


def test_not_found_errors(fake_hub):
    with pytest.raises(NotFoundError, match="repository someone/nothing not found"):
        download_model(repo="someone/nothing", endpoint=fake_hub.url)
    with pytest.raises(NotFoundError, match="revision 'v9' not found"):
        download_model(revision="v9", endpoint=fake_hub.url)
    del fake_hub.files["voices.tgz"]
    with pytest.raises(NotFoundError, match="has no voices.tgz"):
        download_model(endpoint=fake_hub.url)


def test_no_network_and_offline_reuse(fake_hub):
    with pytest.raises(NetworkError, match="cannot reach"):
        download_model(endpoint=closed_port_url())
    first = download_model(endpoint=fake_hub.url)
    fake_hub.log.clear()
    again = download_model(endpoint=fake_hub.url)  # online, complete: no file is fetched
    assert again.already_complete and again.model_dir == first.model_dir
    assert not fake_hub.requests("GET", "/resolve/") and not fake_hub.requests("HEAD")
    url = fake_hub.url
    fake_hub.stop()
    lines = []
    cut_off = download_model(endpoint=url, log=lines.append)
    assert cut_off.offline and cut_off.already_complete and cut_off.model_dir == first.model_dir
    assert "using the complete download" in lines[0]
    offline = download_model(offline=True)
    assert offline.model_dir == first.model_dir and offline.commit == fake_hub.commit
    assert find_model_dir() == first.model_dir


def test_offline_without_a_download_says_so(fake_hub):
    with pytest.raises(NetworkError, match="offline mode is on"):
        download_model(endpoint=fake_hub.url, offline=True)


def test_disk_space_is_checked_before_downloading(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "_free_space", lambda path: 3 * 10**8)
    with pytest.raises(DiskSpaceError, match=r"needs 0\.\d GB, 0\.3 GB are free"):
        download_model(endpoint=fake_hub.url, local_dir=tmp_path)
    assert not fake_hub.requests("GET", "/resolve/")


def test_a_full_disk_while_writing_is_a_clear_error(tmp_path):
    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskSpaceError, match="disk is probably full"):
        hub._write(FullDisk(), b"x", tmp_path / "f")


def test_token_storage_and_precedence(fake_hub, monkeypatch):
    assert current_token() is None
    with pytest.raises(TokenInvalidError):
        store_token("hf_bad", endpoint=fake_hub.url)
    assert store_token("hf_good", endpoint=fake_hub.url) == "tester"
    path = hub.token_path()
    assert path.read_text() == "hf_good" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.is_relative_to(os.environ["HF_HOME"])
    assert current_token() == "hf_good"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert current_token() == "hf_from_env"
