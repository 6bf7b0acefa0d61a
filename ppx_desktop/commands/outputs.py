"""The files one command run writes: checked before the model runs, written all or nothing.

A long generation must not be lost at its last step, and a run must never leave a new WAV beside
an old JSON. So before any work every output is checked: not a folder, its folder exists and
takes a new file, not one of the inputs nor another output, and enough free space for what the
run will write. After the work each file goes to a temporary name unique to this run (two runs
writing the same output never collide) and is flushed to disk; only when all are complete are
they renamed over their targets. A failure while writing (a full disk) removes the temporaries
and leaves the previous files as they were.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MARGIN = 1 << 20  # file system slack per folder beyond the estimate


class OutputError(ValueError):
    """An output cannot be written; the message names the file and what to do."""


@dataclass
class _Output:
    option: str  # the command-line option that named it, for the messages
    path: Path
    estimate: int  # bytes the run will write at most


@dataclass
class OutputSet:
    """The outputs of one run. Args: inputs: (option, path) of every file the run reads."""

    inputs: list[tuple[str, Path]] = field(default_factory=list)
    outputs: list[_Output] = field(default_factory=list)

    def add(self, option: str, path: Path | None, estimate: int) -> None:
        if path is not None:
            self.outputs.append(_Output(option, Path(path), int(estimate)))

    def check(self) -> None:
        """Raises OutputError for the first output that could not be written, before any work."""
        seen: dict[str, str] = {}
        for out in self.outputs:
            p = out.path
            if p.is_dir():
                raise OutputError(f"{out.option} {p} is a folder: name a file inside it, e.g. {p / 'answer' }"
                                  f"{p.suffix or _suffix(out.option)}")
            parent = p.parent
            if not parent.is_dir():
                raise OutputError(f"{out.option} {p}: the folder {parent} does not exist; create it or choose another")
            for option, src in self.inputs:
                if _same_file(p, src):
                    raise OutputError(f"{out.option} {p} is the input given with {option}: writing it would destroy "
                                      "your recording. Choose another output name")
            key = _identity(p)
            if key in seen:
                raise OutputError(f"{out.option} and {seen[key]} name the same file {p}: give each its own name")
            seen[key] = out.option
            if p.exists() and not os.access(p, os.W_OK):
                raise OutputError(f"{out.option} {p} exists and is read-only: choose another name or allow writing it")
            _probe(out.option, parent)
        need: dict[int, tuple[Path, int]] = {}
        for out in self.outputs:
            dev = out.path.parent.stat().st_dev
            folder, total = need.get(dev, (out.path.parent, MARGIN))
            need[dev] = (folder, total + out.estimate)
        for folder, total in need.values():
            free = shutil.disk_usage(folder).free
            if free < total:
                raise OutputError(f"not enough free disk space in {folder} for this run's output: it needs about "
                                  f"{_size(total)}, {_size(free)} are free. Free some space or write elsewhere")

    def write(self, contents: dict[str, bytes]) -> None:
        """Writes every output (by option) all or nothing."""
        written: list[tuple[Path, Path]] = []
        try:
            for out in self.outputs:
                tmp = out.path.parent / f".{out.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
                written.append((tmp, out.path))
                _write_new(tmp, contents[out.option])
        except OSError as exc:
            for tmp, _ in written:
                tmp.unlink(missing_ok=True)
            where = written[-1][1] if written else "the output"
            raise OutputError(f"could not write {where} ({exc.strerror or exc}); nothing was replaced and earlier "
                              "files are as they were. Check the free space and permissions, then run again") from exc
        for i, (tmp, path) in enumerate(written):
            try:
                os.replace(tmp, path)
            except OSError as exc:
                for rest, _ in written[i:]:
                    rest.unlink(missing_ok=True)
                done = ", ".join(str(p) for _, p in written[:i]) or "none"
                raise OutputError(f"could not put {path} in place ({exc.strerror or exc}); already written: {done}. "
                                  "Check the folder's permissions and run again") from exc


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL: a name no other run uses; mode 0o666 honours the umask like an ordinary file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _probe(option: str, folder: Path) -> None:
    """Creates and removes a file in `folder`: permissions and read-only file systems show now."""
    probe = folder / f".ppx-write-test.{os.getpid()}.{secrets.token_hex(4)}"
    try:
        _write_new(probe, b"")
    except OSError as exc:
        raise OutputError(f"{option}: cannot write in {folder} ({exc.strerror or exc}); choose a folder you can "
                          "write to") from exc
    probe.unlink(missing_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return _identity(a) == _identity(b)


def _identity(p: Path) -> str:
    return os.path.normcase(os.path.realpath(p))


def _suffix(option: str) -> str:
    return ".wav" if "wav" in option else ".json"


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
