#!/usr/bin/env bash
# Smoke test of the built bundle (after packaging/build.sh): the frozen executable must
#  1. print its version,
#  2. write a tiny model (torch, safetensors, sentencepiece inside the bundle),
#  3. pass `--self-test`: offscreen Qt, the demo model, one turn through the test audio device
#     (PortAudio, soxr, Qt plugins inside the bundle), exit 0,
#  4. install and remove its menu entry in a throwaway home.
# It runs from a scratch HOME so it never touches the user's files.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="${1:-$ROOT/dist/ppx-desktop}"
EXE="$BUNDLE/ppx-desktop"
[ -x "$EXE" ] || { echo "smoke_test.sh: no bundle at $BUNDLE (run packaging/build.sh first)" >&2; exit 1; }
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
export HOME="$SCRATCH/home" PPX_DESKTOP_HOME="$SCRATCH/data" XDG_CONFIG_HOME="$SCRATCH/config"
unset XDG_DATA_HOME
mkdir -p "$HOME"
# A pip or source install elsewhere must not leak into the frozen app.
unset PYTHONPATH PYTHONHOME
export QT_QPA_PLATFORM=offscreen

step() { echo "smoke: $*"; }
start=$(date +%s)

step "--version"
version="$("$EXE" --version)"
[[ "$version" == "ppx-desktop "* ]] || { echo "unexpected --version output: $version" >&2; exit 1; }

step "make-tiny-model"
"$EXE" make-tiny-model "$SCRATCH/tiny" >/dev/null
[ -f "$SCRATCH/tiny/model.safetensors" ] || { echo "make-tiny-model wrote no model" >&2; exit 1; }

step "--self-test"
"$EXE" --self-test

step "install.sh / uninstall.sh"
"$BUNDLE/install.sh" >/dev/null
desktop="$HOME/.local/share/applications/ppx-desktop.desktop"
grep -qx "Exec=$EXE" "$desktop" || { echo "the menu entry does not start $EXE" >&2; cat "$desktop" >&2; exit 1; }
"$BUNDLE/uninstall.sh" >/dev/null
[ ! -e "$desktop" ] || { echo "uninstall.sh left $desktop" >&2; exit 1; }

step "passed in $(( $(date +%s) - start )) s ($version)"
