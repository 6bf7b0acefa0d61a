#!/usr/bin/env sh
# Adds ppx-desktop to your desktop's application menu (for you only, no root needed).
#
# Inside the bundle folder it registers the bundle's executable; in a source checkout or for a
# pip install it registers `ppx-desktop` (from $PPX_DESKTOP, PATH, or `python3 -m ppx_desktop`).
# The work is done by `ppx-desktop --install-desktop-entry`, the same code a pip install uses.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${PPX_DESKTOP:-}" ]; then
    exec "$PPX_DESKTOP" --install-desktop-entry
elif [ -x "$HERE/ppx-desktop" ] && [ -f "$HERE/ppx-desktop" ]; then
    exec "$HERE/ppx-desktop" --install-desktop-entry
elif command -v ppx-desktop >/dev/null 2>&1; then
    exec ppx-desktop --install-desktop-entry
else
    exec python3 -m ppx_desktop --install-desktop-entry
fi
