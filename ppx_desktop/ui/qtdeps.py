"""The system libraries Qt's X11 platform plugin needs, checked before Qt tries to load it.

On a minimal Linux, Qt's xcb plugin fails to load when one of its libraries is missing and Qt
says only "Could not load the Qt platform plugin xcb" (or names xcb-cursor, whatever is really
missing), then aborts the process. `missing_xcb_libraries` tries each library the plugin links
against (the list comes from `readelf -d` on PySide6's libqxcb.so and libQt6XcbQpa.so) and
`xcb_message` names the missing ones with the Debian package that provides each. No Qt here:
this runs before the first Qt import.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

# soname -> Debian/Ubuntu package. The README and .ci/run list the same packages.
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(environ=os.environ, platform: str = sys.platform) -> bool:
    """Whether Qt will pick its X11 plugin: Linux with a DISPLAY, unless told otherwise."""
    if not platform.startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").split(":")[0].split(";")[0]
    if chosen:
        return chosen == "xcb"
    return bool(environ.get("DISPLAY")) and not environ.get("WAYLAND_DISPLAY")


def missing_xcb_libraries(loads: Callable[[str], bool] | None = None) -> list[tuple[str, str]]:
    """(soname, package) of each library of Qt's X11 plugin that cannot be loaded."""
    loads = loads or _loads
    return [(name, package) for name, package in XCB_LIBRARIES.items() if not loads(name)]


def xcb_message(missing: list[tuple[str, str]]) -> str:
    names = ", ".join(f"{soname} (package {package})" for soname, package in missing)
    packages = " ".join(package for _, package in missing)
    return (f"The window cannot open: Qt's X11 support needs {names}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed. On Debian or Ubuntu run: sudo apt-get install {packages}")
