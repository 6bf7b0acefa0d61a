"""`ppx-desktop make-tiny-model DIR`: a random tiny model directory in the official layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="directory to write (created if missing; must be empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that already holds files (its model files are replaced)")


def run(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..engine.tiny import make_tiny_model

    out: Path = args.dir
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder: name a new folder for the tiny model")
    try:
        held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    except OSError as exc:
        raise UserError(f"cannot read the folder {out} ({exc.strerror or exc}): choose another") from exc
    if held and not args.force:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise UserError(f"{out} is not empty (it holds {shown}); the tiny model would replace model files there. "
                        "Name a new or empty folder, or pass --force to write into it anyway")
    try:
        make_tiny_model(out, seed=args.seed)
    except OSError as exc:
        raise UserError(f"could not write the tiny model to {out} ({exc.strerror or exc}): check the free space "
                        "and permissions") from exc
    print(f"wrote a tiny random model to {out} (use it with --model-dir; it speaks noise, not words), and a tiny "
          f"speech-to-text model to {out / 'stt'} (use it with transcribe --stt-model-dir)")
    return 0
