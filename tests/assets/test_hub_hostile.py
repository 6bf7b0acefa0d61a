"""A hostile Hub: every name the server sends is checked before it becomes a path, and nothing is
ever written outside the download's own folder (the fake server is tests/assets/hub_server.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hub_server import FakeHub
from test_hub import model_files, voices_tgz

from ppx_desktop.assets import hub
from ppx_desktop.assets.hub import HubError, download_model
from ppx_desktop.assets.hub_names import UnsafeNameError
from ppx_desktop.assets.voices import ArchiveError

REPO_FOLDER = "models--nvidia--personaplex-7b-v1"


@pytest.fixture
def world(tmp_path, monkeypatch, _isolated_user_dirs):
    """The user's disk as far as a download can reach: a cache, a chosen folder, the app's data
    (custom voices beside the download record), each with a file that must stay as it is."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "RETRY_WAIT", 0.0)
    root = tmp_path / "disk"
    for keep in ("cache/keep.txt", "home/.bashrc", "x", "voices/keep.pt"):
        (root / keep).parent.mkdir(parents=True, exist_ok=True)
        (root / keep).write_text("the user's")
    data = Path(os.environ["PPX_DESKTOP_HOME"])
    (data / "voices").mkdir(parents=True)
    (data / "voices" / "mine.pt").write_bytes(b"my voice")
    return root


def snapshot(*roots: Path) -> dict[str, tuple]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                if p.is_dir() and not p.is_symlink():  # a folder's own times change when the download adds to it
                    out[str(p)] = ("folder",)
                else:
                    out[str(p)] = (st.st_size, st.st_mtime_ns, p.is_symlink())
    return out


def changed_outside(before: dict, after: dict, allowed: Path | None) -> list[str]:
    keys = set(before) | set(after)
    return sorted(k for k in keys if before.get(k) != after.get(k)
                  and not (allowed is not None and Path(k).is_relative_to(allowed)))


@pytest.fixture
def fake_hub():
    server = FakeHub(model_files()).start()
    yield server
    server.stop()


def run_against(fake_hub, world, *, flat: bool = False, **kw):
    """Downloads from the hostile hub; returns (error, paths changed outside the download's folder)."""
    user_home = Path(os.environ["PPX_DESKTOP_HOME"]).parent
    cache = world / "cache"
    allowed = world / "chosen" if flat else cache / REPO_FOLDER
    before = snapshot(world, user_home)
    with pytest.raises((HubError, UnsafeNameError, ArchiveError)) as info:
        download_model(endpoint=fake_hub.url, cache_dir=cache, local_dir=allowed if flat else None, **kw)
    after = snapshot(world, user_home)
    return str(info.value), changed_outside(before, after, allowed), changed_outside(before, after, None)


@pytest.mark.parametrize("commit", [
    pytest.param("../../../../", id="dotdot"),
    pytest.param("../../../../home/.bashrc", id="dotdot-file"),
    pytest.param("/etc", id="absolute"),
    pytest.param("0123456789abcdef", id="short"),
    pytest.param("0123456789ABCDEF0123456789ABCDEF01234567", id="uppercase"),
    pytest.param("0123456789abcdef0123456789abcdef0123456/", id="slash"),
])
def test_a_commit_that_is_not_40_hex_digits_writes_nothing(fake_hub, world, commit):
    fake_hub.commit = commit
    message, outside, anywhere = run_against(fake_hub, world)
    assert "not a valid name" in message and "HF_ENDPOINT" in message
    assert outside == [] and anywhere == []  # refused before the first folder was made
    assert not fake_hub.requests("HEAD") and not fake_hub.requests("GET", "/resolve/")


def test_a_null_commit_is_a_clear_error(fake_hub, world):
    fake_hub.commit = None
    message, outside, anywhere = run_against(fake_hub, world)
    assert "did not say which commit" in message
    assert outside == [] and anywhere == []


@pytest.mark.parametrize("header, value, words", [
    pytest.param("X-Linked-Etag", '"../../../../x"', "not a valid name", id="linked-etag-dotdot"),
    pytest.param("X-Linked-Etag", '"../../../../home/.bashrc"', "not a valid name", id="linked-etag-overwrite"),
    pytest.param("X-Linked-Etag", '"/tmp/x"', "not a valid name", id="linked-etag-absolute"),
    pytest.param("X-Linked-Etag", '"ab"', "not a valid name", id="linked-etag-short"),
])
def test_an_etag_that_is_not_a_plain_hash_never_names_a_file(fake_hub, world, header, value, words):
    fake_hub.headers["model.safetensors"] = {header: value}
    message, outside, _ = run_against(fake_hub, world)
    assert words in message and "model.safetensors" in message
    assert outside == []
    assert (world / "x").read_text() == "the user's"
    assert not fake_hub.requests("GET", "/resolve/")  # refused at the HEAD, before any byte


def test_an_etag_in_the_plain_etag_header_is_checked_too(fake_hub, world):
    fake_hub.headers["tokenizer_spm_32k_3.model"] = {"X-Linked-Etag": None, "ETag": '"../../../../x"'}
    message, outside, _ = run_against(fake_hub, world)
    assert "not a valid name" in message and outside == []


def test_no_etag_at_all_is_a_clear_error(fake_hub, world):
    fake_hub.headers["model.safetensors"] = {"X-Linked-Etag": None, "ETag": None}
    message, outside, _ = run_against(fake_hub, world)
    assert "sent no ETag for model.safetensors" in message and outside == []


@pytest.mark.parametrize("location", [
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("ftp://127.0.0.1/model", id="ftp"),
    pytest.param("data:,hello", id="data"),
])
def test_a_redirect_to_another_kind_of_address_is_refused(fake_hub, world, location):
    fake_hub.headers["model.safetensors"] = {"Location": location}
    message, outside, _ = run_against(fake_hub, world)
    assert "download address of model.safetensors" in message and outside == []


def test_a_cdn_redirecting_to_a_local_file_reads_nothing(fake_hub, world, tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * len(model_files()["model.safetensors"]))
    fake_hub.cdn = True
    fake_hub.cdn_redirect = secret.as_uri()  # the second hop, followed by our own fetch
    message, outside, _ = run_against(fake_hub, world)
    assert "refused" in message and "302" in message
    assert outside == []
    blobs = world / "cache" / REPO_FOLDER / "blobs"
    assert all(b"s" * 64 not in p.read_bytes() for p in blobs.iterdir())


def test_hostile_file_names_in_the_listing_are_never_fetched(fake_hub, world):
    fake_hub.extra_files = {"../../../../x": 5, "/etc/passwd": 5, "voices/../../y": 5}
    user_home = Path(os.environ["PPX_DESKTOP_HOME"]).parent
    before = snapshot(world, user_home)
    result = download_model(endpoint=fake_hub.url, cache_dir=world / "cache")
    after = snapshot(world, user_home)
    allowed = [world / "cache" / REPO_FOLDER, user_home / "data" / hub.RECORD]
    assert [k for k in changed_outside(before, after, None) if not any(Path(k).is_relative_to(a) for a in allowed)] \
        == []
    assert result.model_dir.is_relative_to(world / "cache" / REPO_FOLDER)
    assert not [r for r in fake_hub.log if "passwd" in r.path or "x" == r.path.rsplit("/", 1)[-1]]


@pytest.mark.parametrize("flat", [pytest.param(False, id="cache"), pytest.param(True, id="chosen-folder")])
@pytest.mark.parametrize("member", [
    pytest.param("voices/../../../../x", id="dotdot"),
    pytest.param("/tmp/evil.pt", id="absolute"),
])
def test_an_archive_member_leaving_the_folder_is_refused(fake_hub, world, flat, member):
    fake_hub.files["voices.tgz"] = voices_tgz({"voices/NATF0.pt": b"a", member: b"evil"})
    message, outside, _ = run_against(fake_hub, world, flat=flat)
    assert "was not unpacked" in message and outside == []
    assert (world / "x").read_text() == "the user's"


def test_a_link_planted_in_the_snapshot_cannot_redirect_a_write(fake_hub, world):
    snapshot_dir = world / "cache" / REPO_FOLDER / "snapshots" / fake_hub.commit
    snapshot_dir.mkdir(parents=True)
    (snapshot_dir / "voices").symlink_to(world / "voices")  # points at the user's files
    message, outside, _ = run_against(fake_hub, world)
    assert "outside" in message and outside == []
    assert (world / "voices" / "keep.pt").read_text() == "the user's"


@pytest.mark.parametrize("revision", ["../../x", "main/../../..", "a b"])
def test_a_revision_name_that_would_leave_refs_is_refused(fake_hub, world, revision):
    message, outside, anywhere = run_against(fake_hub, world, revision=revision)
    assert "not a valid branch" in message and anywhere == []
