"""`ppx-desktop download`: fetch and verify the model from the Hugging Face Hub, unpack its voices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..assets.hub import DEFAULT_REPO


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", default=DEFAULT_REPO,
                   help=f"Hub repository with the {DEFAULT_REPO} layout (default: %(default)s)")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    p.add_argument("--dir", type=Path, default=None,
                   help="put the files in this folder (default: the Hugging Face cache, HF_HOME)")
    p.add_argument("--token", default=None,
                   help="Hugging Face access token (default: HF_TOKEN, else the stored token)")
    p.add_argument("--save-token", action="store_true",
                   help="check --token with the Hub and store it for later runs (as `hf auth login` does)")
    p.add_argument("--with-transcription", action="store_true",
                   help="also download the speech-to-text model kyutai/stt-1b-en_fr (about 1B parameters, "
                        "CC-BY 4.0; with --dir it goes to DIR/stt), which transcribes what you say")


def _bar(done: int, total: int, speed: float, eta: float | None) -> None:
    width = 30
    frac = done / total if total else 1.0
    left = f"{int(eta // 60)}:{int(eta % 60):02d} left" if eta is not None else "--:-- left"
    sys.stderr.write(f"\r[{'#' * int(frac * width):<{width}}] {done / 1e9:6.2f}/{total / 1e9:.2f} GB "
                     f"{speed / 1e6:6.1f} MB/s {left}  ")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from ..assets.hub import download_model, store_token

    if args.save_token:
        if not args.token:
            from ..cli import UserError

            raise UserError("--save-token needs --token hf_...")
        user = store_token(args.token)
        print(f"token stored (account: {user})")
    show = sys.stderr.isatty()
    result = download_model(repo=args.repo, revision=args.revision, local_dir=args.dir, token=args.token,
                            progress=_bar if show else None, log=lambda msg: print(msg, file=sys.stderr))
    if show:
        sys.stderr.write("\n")
    if result.already_complete:
        print(f"{result.repo} is already complete in {result.model_dir}"
              + (" (offline: not checked for updates)" if result.offline else ""))
    else:
        print(f"downloaded {result.repo} ({result.bytes_downloaded / 1e9:.2f} GB, revision {result.commit[:12]}) "
              f"to {result.model_dir}")
    if args.with_transcription:
        _download_transcription(args, show)
    print("next: `ppx-desktop status` to check the GPU")
    return 0


def _download_transcription(args: argparse.Namespace, show: bool) -> None:
    from ..assets.stt_model import download_stt

    local = args.dir / "stt" if args.dir is not None else None
    result = download_stt(local_dir=local, token=args.token, progress=_bar if show else None,
                          log=lambda msg: print(msg, file=sys.stderr))
    if show:
        sys.stderr.write("\n")
    if result.already_complete:
        print(f"{result.repo} is already complete in {result.model_dir}")
    else:
        print(f"downloaded {result.repo} ({result.bytes_downloaded / 1e9:.2f} GB) to {result.model_dir}")
