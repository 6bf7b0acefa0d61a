#!/usr/bin/env sh
# Removes the menu entry that install.sh added (exactly the files it wrote).
#
# Inside the bundle folder it asks the bundle's executable; in a source checkout or for a
# pip install it asks `ppx-desktop` (from $PPX_DESKTOP, PATH, or `python3 -m ppx_desktop`).
# The work is done by `ppx-desktop --uninstall-desktop-entry`, the same code a pip install uses.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${PPX_DESKTOP:-}" ]; then
    exec "$PPX_DESKTOP" --uninstall-desktop-entry
elif [ -x "$HERE/ppx-desktop" ] && [ -f "$HERE/ppx-desktop" ]; then
    exec "$HERE/ppx-desktop" --uninstall-desktop-entry
elif command -v ppx-desktop >/dev/null 2>&1; then
    exec ppx-desktop --uninstall-desktop-entry
else
    exec python3 -m ppx_desktop --uninstall-desktop-entry
fi
