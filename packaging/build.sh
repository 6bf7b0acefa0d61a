#!/usr/bin/env bash
# Builds the one-folder bundle dist/ppx-desktop/ with PyInstaller (Linux).
#
#   packaging/build.sh [--archive]
#
# Uses the Python in $PYTHON, else .venv/bin/python, else python3; that environment must have
# ppx-desktop's dependencies, with the torch you want frozen into the bundle (a CUDA build for a
# release, the CPU build for a demo-only bundle). PyInstaller is installed into it if missing.
# --archive also writes dist/ppx-desktop-<version>-linux-x86_64.tar.gz.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
ARCHIVE=0
for arg in "$@"; do
    case "$arg" in
        --archive) ARCHIVE=1 ;;
        *) echo "usage: packaging/build.sh [--archive]" >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet "pyinstaller>=6.10"
fi
# On Linux the sounddevice wheel carries no PortAudio: the bundle takes the system's.
if ! "$PYTHON" -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('portaudio') is None)"; then
    echo "build.sh: PortAudio not found; install it first (Debian/Ubuntu: apt-get install libportaudio2)" >&2
    exit 1
fi

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/ppx-desktop.spec
# Launcher scripts travel with the bundle: they register the bundle's own executable.
cp packaging/linux/install.sh packaging/linux/uninstall.sh dist/ppx-desktop/
chmod +x dist/ppx-desktop/install.sh dist/ppx-desktop/uninstall.sh
echo "built dist/ppx-desktop in $(( $(date +%s) - start )) s, $(du -sh dist/ppx-desktop | cut -f1)"

if [ "$ARCHIVE" = 1 ]; then
    version=$("$PYTHON" -c "import ppx_desktop; print(ppx_desktop.__version__)")
    tarball="dist/ppx-desktop-${version}-linux-$(uname -m).tar.gz"
    tar -C dist -czf "$tarball" ppx-desktop
    echo "wrote $tarball ($(du -sh "$tarball" | cut -f1))"
fi
