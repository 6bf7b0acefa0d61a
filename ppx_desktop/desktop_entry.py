"""Menu entries: the app in the Linux desktop menu (a .desktop file) or the Windows Start menu (a .lnk).

`ppx-desktop --install-desktop-entry` and packaging/linux/install.sh (which calls it) share this
code, for a pip install and for the PyInstaller bundle alike; the entry starts whatever is running
the install (`sys.executable -m ppx_desktop`, or the bundle's executable), so install from the
environment or bundle folder you want the menu to start, and install again after moving it.

Every file written is listed in a manifest, so uninstalling removes exactly those files and
nothing the user or other apps put beside them.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__

APP_ID = "ppx-desktop"
ICON_DIR = Path(__file__).resolve().parent / "resources" / "icons"
# Sizes the hicolor theme defines for apps; other PNG sizes would be ignored by icon lookups.
HICOLOR_SIZES = (16, 22, 24, 32, 48, 64, 96, 128, 256, 512)
MANIFEST_NAME = "desktop-entry-manifest.json"

# Characters that force quoting of an Exec argument (Desktop Entry spec, "The Exec key").
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


class DesktopEntryError(Exception):
    """The menu entry cannot be installed here; the message says why, for the user."""


@dataclass
class EntryChange:
    """What an install or uninstall did, for printing."""

    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"wrote {p}" for p in self.written] + [f"removed {p}" for p in self.removed]
        return out + self.notes


# --- what the entry starts ---------------------------------------------------------------------


def launch_command() -> list[str]:
    """The command line that starts this very installation of the app."""
    exe = Path(sys.executable)
    if getattr(sys, "frozen", False):
        if sys.platform == "win32":
            # The CLI exe may be running the install; the menu should start the windowed one.
            windowed = exe.with_name(f"{APP_ID}.exe")
            return [str(windowed if windowed.exists() else exe)]
        return [str(exe)]
    if sys.platform == "win32":
        # pythonw.exe has no console window, which a launcher-started app should not open.
        pythonw = exe.with_name("pythonw.exe")
        if pythonw.exists():
            exe = pythonw
    return [str(exe), "-m", "ppx_desktop"]


# --- icons ---------------------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (no image library needed)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DesktopEntryError(f"{path} is not a PNG file")
    return struct.unpack(">II", head[16:24])


def find_icon_pngs(icon_dir: Path = ICON_DIR) -> dict[int, Path]:
    """Square app-icon PNGs in `icon_dir`, by edge length (file names may carry any size suffix)."""
    found: dict[int, Path] = {}
    for path in sorted(Path(icon_dir).glob(f"{APP_ID}*.png")):
        width, height = png_size(path)
        if width == height:
            found.setdefault(width, path)
    return found


def write_ico(pngs: dict[int, Path], out: str | Path) -> Path:
    """An .ico holding the PNGs as they are (PNG-in-ICO, readable since Windows Vista).

    Windows wants .ico for an .exe and for shortcut icons; embedding the PNGs avoids an
    image library. ICO sizes are one byte each, with 0 meaning 256, so larger PNGs are left out.
    """
    entries = sorted((size, Path(p)) for size, p in pngs.items() if size <= 256)
    if not entries:
        raise DesktopEntryError("no PNG icon of 256 px or less to build an .ico from")
    blobs = [p.read_bytes() for _, p in entries]
    header = struct.pack("<HHH", 0, 1, len(entries))
    offset = len(header) + 16 * len(entries)
    directory = b""
    for (size, _), blob in zip(entries, blobs):
        edge = 0 if size == 256 else size
        directory += struct.pack("<BBBBHHII", edge, edge, 0, 0, 1, 32, len(blob), offset)
        offset += len(blob)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(header + directory + b"".join(blobs))
    return out


# --- the .desktop file ---------------------------------------------------------------------------


def _escape_string(value: str) -> str:
    """Escapes for a Desktop Entry string value (applies to Exec after its own quoting)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _quote_exec_arg(arg: str) -> str:
    arg = arg.replace("%", "%%")  # a literal % must not read as a field code such as %f
    if arg and not (_EXEC_RESERVED & set(arg)):
        return arg
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{inner}"'


def exec_line(argv: list[str]) -> str:
    """The Exec value for `argv`, quoted and escaped as the Desktop Entry spec requires."""
    return _escape_string(" ".join(_quote_exec_arg(a) for a in argv))


def desktop_file_text(argv: list[str]) -> str:
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=PersonaPlex Desktop",
        "GenericName=Voice conversation",
        "Comment=Talk by voice with NVIDIA PersonaPlex on your own GPU",
        f"Exec={exec_line(argv)}",
        # Hides the entry if the bundle or environment it points at is deleted.
        f"TryExec={_escape_string(argv[0])}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=AudioVideo;Audio;",
        "Keywords=voice;speech;conversation;assistant;PersonaPlex;",
        "StartupNotify=true",
        # Must match the Qt window class so the window groups with this entry (X11 and Wayland).
        f"StartupWMClass={APP_ID}",
        f"X-PPX-Desktop-Version={__version__}",
    ]
    return "\n".join(lines) + "\n"


# --- manifest ------------------------------------------------------------------------------------


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _manifest_dir() -> Path:
    # Beside the entry it describes, not under PPX_DESKTOP_HOME: the entry belongs to the user's
    # desktop, and an uninstall run from another environment must still find it.
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / APP_ID
    return xdg_data_home() / APP_ID


def manifest_path() -> Path:
    return _manifest_dir() / MANIFEST_NAME


def _read_manifest() -> list[Path]:
    path = manifest_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Path(p) for p in data["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DesktopEntryError(f"the install manifest {path} is damaged ({exc}); delete it and install again") from exc


def _write_manifest(files: list[Path], argv: list[str]) -> None:
    path = manifest_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": __version__, "command": argv, "files": [str(p) for p in files]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _remove_listed(files: list[Path], change: EntryChange) -> None:
    for path in files:
        if path.exists() or path.is_symlink():
            path.unlink()
            change.removed.append(path)
    manifest = manifest_path()
    if manifest.exists():
        manifest.unlink()


# --- Linux ---------------------------------------------------------------------------------------


def _refresh_caches(applications: Path, hicolor: Path, change: EntryChange) -> None:
    # Only caches that already exist are refreshed: a stale cache would hide the new entry or
    # icon, while creating one where none existed would leave a file behind that uninstall does
    # not own. Missing tools are fine: desktops then rescan the folders themselves.
    jobs = [
        (applications / "mimeinfo.cache", ["update-desktop-database", "-q", str(applications)]),
        (hicolor / "icon-theme.cache", ["gtk-update-icon-cache", "-q", "-f", "-t", str(hicolor)]),
    ]
    for cache, cmd in jobs:
        if cache.exists() and shutil.which(cmd[0]):
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                change.notes.append(f"note: {cmd[0]} failed: {result.stderr.strip()}")


def install_linux(argv: list[str] | None = None, icon_dir: Path = ICON_DIR) -> EntryChange:
    argv = argv or launch_command()
    change = EntryChange()
    _remove_listed(_read_manifest(), EntryChange())  # a reinstall replaces the previous entry
    pngs = find_icon_pngs(icon_dir)
    svg = Path(icon_dir) / f"{APP_ID}.svg"
    if not pngs and not svg.exists():
        raise DesktopEntryError(f"no app icon found in {icon_dir}; the installation is incomplete")

    data_home = xdg_data_home()
    applications = data_home / "applications"
    hicolor = data_home / "icons" / "hicolor"
    targets: list[tuple[Path, bytes]] = []
    for size, png in pngs.items():
        if size in HICOLOR_SIZES:
            targets.append((hicolor / f"{size}x{size}" / "apps" / f"{APP_ID}.png", png.read_bytes()))
    if svg.exists():
        targets.append((hicolor / "scalable" / "apps" / f"{APP_ID}.svg", svg.read_bytes()))
    targets.append((applications / f"{APP_ID}.desktop", desktop_file_text(argv).encode("utf-8")))

    for path, content in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        change.written.append(path)
    _write_manifest(change.written, argv)
    _refresh_caches(applications, hicolor, change)
    change.notes.append(f"the menu entry starts: {' '.join(argv)}")
    return change


def uninstall_linux() -> EntryChange:
    change = EntryChange()
    files = _read_manifest()
    if not files:
        change.notes.append("no ppx-desktop menu entry was installed for this user")
        return change
    _remove_listed(files, change)
    data_home = xdg_data_home()
    _refresh_caches(data_home / "applications", data_home / "icons" / "hicolor", change)
    return change


# --- Windows -------------------------------------------------------------------------------------


def start_menu_dir() -> Path:
    appdata = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    return appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs"


def _ps_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # PowerShell single-quoted: only ' needs doubling


def shortcut_script(lnk: Path, argv: list[str], icon: Path) -> str:
    """PowerShell that writes a .lnk starting `argv` (WScript.Shell, present on every Windows)."""
    arguments = subprocess.list2cmdline(argv[1:])
    return "; ".join([
        "$ErrorActionPreference = 'Stop'",
        "$s = (New-Object -ComObject WScript.Shell).CreateShortcut(" + _ps_quote(str(lnk)) + ")",
        "$s.TargetPath = " + _ps_quote(argv[0]),
        "$s.Arguments = " + _ps_quote(arguments),
        "$s.WorkingDirectory = " + _ps_quote(str(Path(argv[0]).parent)),
        "$s.IconLocation = " + _ps_quote(f"{icon},0"),
        "$s.Description = " + _ps_quote("Talk by voice with NVIDIA PersonaPlex on your own GPU"),
        "$s.Save()",
    ])


def install_windows(argv: list[str] | None = None, icon_dir: Path = ICON_DIR) -> EntryChange:
    argv = argv or launch_command()
    change = EntryChange()
    _remove_listed(_read_manifest(), EntryChange())
    if getattr(sys, "frozen", False):
        icon = Path(argv[0])  # the bundle's exe carries the icon
    else:
        icon = write_ico(find_icon_pngs(icon_dir), _manifest_dir() / f"{APP_ID}.ico")
        change.written.append(icon)
    lnk = start_menu_dir() / "PersonaPlex Desktop.lnk"
    lnk.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["powershell", "-NoProfile", "-NonInteractive", "-Command", shortcut_script(lnk, argv, icon)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise DesktopEntryError(f"could not create the Start-menu shortcut: {result.stderr.strip()}")
    change.written.append(lnk)
    _write_manifest(change.written, argv)
    change.notes.append(f"the Start-menu entry starts: {subprocess.list2cmdline(argv)}")
    return change


def uninstall_windows() -> EntryChange:
    change = EntryChange()
    files = _read_manifest()
    if not files:
        change.notes.append("no ppx-desktop Start-menu entry was installed for this user")
        return change
    _remove_listed(files, change)
    return change


# --- entry points --------------------------------------------------------------------------------


def install() -> EntryChange:
    if sys.platform == "win32":
        return install_windows()
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return install_linux()
    raise DesktopEntryError(f"menu entries are not supported on {sys.platform} yet")


def uninstall() -> EntryChange:
    if sys.platform == "win32":
        return uninstall_windows()
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return uninstall_linux()
    raise DesktopEntryError(f"menu entries are not supported on {sys.platform} yet")
