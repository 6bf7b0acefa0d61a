"""Runtime hook: runs inside the frozen app before `ppx_desktop` is imported.

Kept dependency-free (only the standard library): it runs before anything else is importable.
"""

import ctypes.util
import os
import sys


def _bundled_portaudio() -> str | None:
    # On Linux the sounddevice wheel has no PortAudio; the spec bundles the build machine's
    # libportaudio.so.2 next to the other libraries. sounddevice looks it up with
    # ctypes.util.find_library("portaudio"), which searches ldconfig's cache and never the bundle,
    # so on a machine without libportaudio2 the app would fail with "PortAudio library not found".
    # (Windows and macOS wheels carry PortAudio in _sounddevice_data, which sounddevice finds itself.)
    base = getattr(sys, "_MEIPASS", None)
    if not base:
        return None
    for name in ("libportaudio.so.2", "libportaudio.so"):
        path = os.path.join(base, name)
        if os.path.exists(path):
            return path
    return None


_portaudio = _bundled_portaudio() if sys.platform.startswith("linux") else None
if _portaudio:
    _original_find_library = ctypes.util.find_library

    def _find_library(name: str) -> str | None:
        if name == "portaudio":
            return _portaudio
        return _original_find_library(name)

    ctypes.util.find_library = _find_library

# torch.compile's Inductor compiles in worker processes started as `sys.executable <worker
# script>`; in a frozen app sys.executable is ppx-desktop itself, so a worker would start the app.
# One compile thread keeps Inductor in-process.
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
