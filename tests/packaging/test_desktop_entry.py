"""The Linux menu entry: install and uninstall against a temporary home, Exec quoting, ICO files."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ppx_desktop import __version__, desktop_entry
from ppx_desktop.desktop_entry import (
    APP_ID,
    DesktopEntryError,
    desktop_file_text,
    exec_line,
    find_icon_pngs,
    install_linux,
    shortcut_script,
    uninstall_linux,
    write_ico,
)

ROOT = Path(__file__).resolve().parents[2]
needs_validator = pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                                     reason="desktop-file-validate missing (apt package desktop-file-utils)")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh home folder: the entry must land in it and nowhere else."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return home


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def desktop_exec_argv(value: str) -> list[str]:
    """Reads an Exec value back as the Desktop Entry spec says launchers do: string unescape,
    then split on spaces, with \\ escaping only " ` $ \\ inside double quotes."""
    value = value.replace("\\\\", "\\")
    args: list[str] = []
    current: list[str] | None = None
    quoted = False
    i = 0
    while i < len(value):
        c = value[i]
        if quoted and c == "\\" and value[i + 1] in '"`$\\':
            current.append(value[i + 1])
            i += 1
        elif c == '"':
            quoted = not quoted
            current = current if current is not None else []
        elif c == " " and not quoted:
            if current is not None:
                args.append("".join(current))
            current = None
        else:
            current = (current or []) + [c]
        i += 1
    if current is not None:
        args.append("".join(current))
    return [a.replace("%%", "%") for a in args]


def test_install_then_uninstall_leaves_the_home_as_it_was(home):
    share = home / ".local" / "share"
    (share / "applications").mkdir(parents=True)
    other = share / "applications" / "other-app.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    before = all_files(home)
    argv = ["/opt/ppx desktop/ppx-desktop"]

    change = install_linux(argv)

    desktop = share / "applications" / f"{APP_ID}.desktop"
    assert desktop.read_text() == desktop_file_text(argv)
    pngs = find_icon_pngs()
    for size in pngs:
        if size in desktop_entry.HICOLOR_SIZES:
            assert (share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png").read_bytes() \
                == pngs[size].read_bytes()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").exists()
    manifest = json.loads(desktop_entry.manifest_path().read_text())
    assert sorted(manifest["files"]) == sorted(str(p) for p in change.written)
    assert all_files(home) == before | set(change.written) | {desktop_entry.manifest_path()}
    assert any(line.startswith(f"wrote {desktop}") for line in change.lines())

    removed = uninstall_linux()

    assert sorted(removed.removed) == sorted(change.written)
    assert all_files(home) == before
    assert other.read_text().startswith("[Desktop Entry]")
    assert "no ppx-desktop menu entry" in uninstall_linux().lines()[0]


def test_reinstall_replaces_the_entry_and_respects_xdg_data_home(home, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    install_linux(["/old/place/ppx-desktop"])
    change = install_linux(["/new/place/ppx-desktop"])
    desktop = tmp_path / "xdg" / "applications" / f"{APP_ID}.desktop"
    assert "Exec=/new/place/ppx-desktop\n" in desktop.read_text()
    assert not (home / ".local").exists()
    uninstall_linux()
    assert {p for p in (tmp_path / "xdg").rglob("*") if p.is_file()} == set()
    assert not any(p.exists() for p in change.written)


def test_missing_icons_are_an_error(home, tmp_path):
    with pytest.raises(DesktopEntryError, match="no app icon"):
        install_linux(["/x/ppx-desktop"], icon_dir=tmp_path)


@pytest.mark.parametrize("argv", [
    pytest.param(["/usr/bin/python3", "-m", "ppx_desktop"], id="plain"),
    pytest.param(["/home/a b/.venv/bin/python", "-m", "ppx_desktop"], id="space"),
    pytest.param(['/tmp/we"ird$`\\dir/ppx-desktop', "50%"], id="reserved-chars"),
])
def test_exec_line_round_trips(argv):
    assert desktop_exec_argv(exec_line(argv)) == argv


@needs_validator
@pytest.mark.parametrize("argv", [
    pytest.param([sys.executable, "-m", "ppx_desktop"], id="pip-install"),
    pytest.param(['/opt/my apps/we"ird$/ppx-desktop'], id="bundle-odd-path"),
])
def test_desktop_file_passes_desktop_file_validate(tmp_path, argv):
    path = tmp_path / f"{APP_ID}.desktop"
    path.write_text(desktop_file_text(argv))
    result = subprocess.run(["desktop-file-validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_packaging_template_matches_the_generated_entry():
    template = (ROOT / "packaging" / "linux" / f"{APP_ID}.desktop").read_text()
    template = "".join(line for line in template.splitlines(keepends=True) if not line.startswith("#"))
    filled = template.replace("@EXEC@", "/opt/ppx-desktop/ppx-desktop").replace(
        "@TRYEXEC@", "/opt/ppx-desktop/ppx-desktop").replace("@VERSION@", __version__)
    assert filled == desktop_file_text(["/opt/ppx-desktop/ppx-desktop"])


def test_launch_command_starts_this_python_or_the_frozen_app(monkeypatch):
    assert desktop_entry.launch_command() == [sys.executable, "-m", "ppx_desktop"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/ppx-desktop/ppx-desktop")
    assert desktop_entry.launch_command() == ["/opt/ppx-desktop/ppx-desktop"]


def test_ico_holds_the_pngs_readably(tmp_path):
    pngs = find_icon_pngs()
    assert {16, 32, 48, 256} <= set(pngs), "the app ships the usual icon sizes"
    ico = write_ico(pngs, tmp_path / "app.ico")
    data = ico.read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1)
    assert count == len([s for s in pngs if s <= 256])
    for i in range(count):
        width, height, _, _, planes, bpp, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        edge = width or 256
        assert width == height and planes == 1 and bpp == 32
        assert data[offset:offset + size] == pngs[edge].read_bytes()


def test_windows_shortcut_script_quotes_paths():
    script = shortcut_script(Path("C:/Users/o'neil/Start Menu/PersonaPlex Desktop.lnk"),
                             ["C:/Py thon/pythonw.exe", "-m", "ppx_desktop"], Path("C:/x/ppx-desktop.ico"))
    assert "CreateShortcut('C:/Users/o''neil/Start Menu/PersonaPlex Desktop.lnk')" in script
    assert "$s.TargetPath = 'C:/Py thon/pythonw.exe'" in script
    assert "$s.Arguments = '-m ppx_desktop'" in script
    assert "$s.IconLocation = 'C:/x/ppx-desktop.ico,0'" in script
    assert script.endswith("$s.Save()")


def test_install_script_registers_and_removes_through_the_cli(home, tmp_path):
    """packaging/linux/install.sh and uninstall.sh from a checkout: they run `ppx-desktop` (PATH or $PPX_DESKTOP)."""
    env = dict(os.environ, HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("XDG_DATA_HOME", None)
    if shutil.which("ppx-desktop", path=env["PATH"]) is None:  # not pip-installed: name the command instead
        wrapper = tmp_path / "ppx-desktop"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ppx_desktop "$@"\n')
        wrapper.chmod(0o755)
        env["PPX_DESKTOP"] = str(wrapper)
    run = subprocess.run([str(ROOT / "packaging" / "linux" / "install.sh")], env=env, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    desktop = home / ".local" / "share" / "applications" / f"{APP_ID}.desktop"
    assert f"wrote {desktop}" in run.stdout
    exec_value = next(line[5:] for line in desktop.read_text().splitlines() if line.startswith("Exec="))
    assert desktop_exec_argv(exec_value)[1:] == ["-m", "ppx_desktop"]

    run = subprocess.run([str(ROOT / "packaging" / "linux" / "uninstall.sh")], env=env, capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert f"removed {desktop}" in run.stdout
    assert not desktop.exists()
    assert not [p for p in (home / ".local" / "share").rglob("*") if p.is_file() and APP_ID in p.name
                and "logs" not in p.parts]
