"""The outputs of one run: checked first, written all or nothing under per-run temporary names."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from ppx_desktop.commands import outputs
from ppx_desktop.commands.outputs import OutputError, OutputSet


def test_two_runs_writing_the_same_outputs_never_collide(tmp_path, monkeypatch):
    """Both write their temporaries at once (a barrier holds each between its two files); each
    output ends up whole, from one run, and no temporary is left."""
    barrier = threading.Barrier(2, timeout=10)
    real = outputs._write_new

    def write(path: Path, data: bytes) -> None:
        real(path, data)
        if path.name.startswith(".a.wav."):
            barrier.wait()  # both runs have written their first temporary, neither has renamed

    monkeypatch.setattr(outputs, "_write_new", write)
    errors = []

    def run(tag: bytes) -> None:
        try:
            s = OutputSet()
            s.add("--output-wav", tmp_path / "a.wav", 10)
            s.add("--output-text", tmp_path / "a.json", 10)
            s.check()
            s.write({"--output-wav": tag * 1000, "--output-text": tag * 10})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(tag,)) for tag in (b"1", b"2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    wav, text = (tmp_path / "a.wav").read_bytes(), (tmp_path / "a.json").read_bytes()
    assert wav in (b"1" * 1000, b"2" * 1000) and text in (b"1" * 10, b"2" * 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.wav"]


def test_a_failure_on_the_second_file_leaves_both_old_files(tmp_path, monkeypatch):
    (tmp_path / "a.wav").write_bytes(b"old wav")
    (tmp_path / "a.json").write_bytes(b"old json")
    real = outputs._write_new

    def write(path: Path, data: bytes) -> None:
        if ".a.json." in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(outputs, "_write_new", write)
    s = OutputSet()
    s.add("--output-wav", tmp_path / "a.wav", 10)
    s.add("--output-text", tmp_path / "a.json", 10)
    with pytest.raises(OutputError, match="nothing was replaced"):
        s.write({"--output-wav": b"new wav", "--output-text": b"new json"})
    assert (tmp_path / "a.wav").read_bytes() == b"old wav" and (tmp_path / "a.json").read_bytes() == b"old json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.wav"]


def test_outputs_take_the_umask_like_other_files(tmp_path):
    s = OutputSet()
    s.add("--output-wav", tmp_path / "a.wav", 1)
    s.write({"--output-wav": b"x"})
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.wav").stat().st_mode & 0o777 == 0o666 & ~umask
