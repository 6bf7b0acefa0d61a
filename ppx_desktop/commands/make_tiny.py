"""`ppx-desktop make-tiny-model DIR`: a random tiny model directory in the official layout."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="directory to write (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from ..engine.tiny import make_tiny_model

    out = make_tiny_model(args.dir, seed=args.seed)
    print(f"wrote a tiny random model to {out} (use it with --model-dir; it speaks noise, not words), and a tiny "
          f"speech-to-text model to {out / 'stt'} (use it with transcribe --stt-model-dir)")
    return 0
