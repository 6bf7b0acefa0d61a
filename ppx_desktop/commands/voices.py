"""`ppx-desktop voices list|add|remove`: the preset and custom voices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONSENT_QUESTION = ("Do you have the consent of the person speaking in this recording to make a synthetic copy "
                    "of their voice? [y/N] ")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="voices_command", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="list preset and custom voices")
    ls.add_argument("--model-dir", type=Path, default=None, help="model directory (default: the downloaded model)")
    add = sub.add_parser("add", help="make a custom voice from a 10-30 s recording")
    add.add_argument("name", help="voice name: letters, digits, '-' or '_'")
    add.add_argument("wav", type=Path, help="recording of the speaker (WAV, FLAC or OGG), 10 to 30 s")
    add.add_argument("--model-dir", type=Path, default=None, help="model directory (default: the downloaded model)")
    add.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    add.add_argument("--yes-i-have-consent", action="store_true",
                     help="confirm the speaker agreed to having their voice copied (else you are asked)")
    add.add_argument("--overwrite", action="store_true", help="replace a custom voice of the same name")
    rm = sub.add_parser("remove", help="delete a custom voice")
    rm.add_argument("name")


def _model_dir(arg: Path | None) -> Path | None:
    from ..assets.hub import find_model_dir

    return arg if arg is not None else find_model_dir()


def _consent(flag: bool) -> bool:
    from ..cli import UserError

    if flag:
        return True
    if not sys.stdin.isatty():
        raise UserError("making a voice needs the speaker's consent: pass --yes-i-have-consent to confirm it")
    return input(CONSENT_QUESTION).strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from ..assets.voices import create_custom_voice, list_voices, remove_custom_voice
    from ..cli import UserError

    if args.voices_command == "list":
        model_dir = _model_dir(args.model_dir)
        if model_dir is None:
            print("(no downloaded model found: presets are listed as missing; run `ppx-desktop download`)")
        for v in list_voices(model_dir):
            where = str(v.path) if v.path is not None else "not installed"
            print(f"{v.id:<10} {v.family or '':<8} {v.gender or '':<7} {v.description} [{where}]")
        return 0
    if args.voices_command == "remove":
        path = remove_custom_voice(args.name)
        print(f"removed {path}")
        return 0
    if not _consent(args.yes_i_have_consent):
        print("not created: the speaker's consent is required")
        return 1
    model_dir = _model_dir(args.model_dir)
    if model_dir is None:
        raise UserError("no model found: run `ppx-desktop download` first or pass --model-dir")
    from ..engine.model import load_model

    model = load_model(model_dir, device=args.device)

    def progress(done: int, total: int) -> None:
        print(f"\rencoding the voice: {done}/{total} frames", end="", file=sys.stderr, flush=True)

    path = create_custom_voice(model, args.name, args.wav, consent=True, overwrite=args.overwrite, progress=progress)
    print(file=sys.stderr)
    print(f"created voice {args.name!r}: {path} (use it with --voice {args.name})")
    return 0
