"""The `ppx-desktop` command line: one subcommand per job, each in its own module.

Subcommand modules expose `add_arguments(parser)` and `run(args) -> int`; they are imported
only when used, so `ppx-desktop --help` stays fast (torch is not imported for it).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# name -> (module, one-line help)
SUBCOMMANDS = {
    "offline": ("ppx_desktop.commands.offline", "WAV in, WAV + text out, like the reference's moshi.offline"),
    "make-tiny-model": ("ppx_desktop.commands.make_tiny", "write a random tiny model directory for tests and demos"),
    "audio-check": ("ppx_desktop.commands.audio_check", "list audio devices, record and play back, measure echo"),
    "download": ("ppx_desktop.commands.download", "download and verify the model from the Hugging Face Hub"),
    "status": ("ppx_desktop.commands.status", "what is installed, what is missing, and whether the GPU is enough"),
    "voices": ("ppx_desktop.commands.voices", "list preset and custom voices; add or remove your own"),
    "bench": ("ppx_desktop.commands.bench", "time one 80 ms frame here: ms per part, ops, memory, bandwidth"),
    "respond": ("ppx_desktop.commands.respond", "turn-based: WAV turns in, the agent's answers out (one conversation)"),
    "quant-check": ("ppx_desktop.commands.quant_check", "how close int8 or int4 weights stay to the full model"),
    "transcribe": ("ppx_desktop.commands.transcribe", "WAV in, the words said and their times out (speech-to-text)"),
}


class UserError(Exception):
    """An error the user can fix; printed as one clear line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppx-desktop", description="Talk with NVIDIA PersonaPlex on your own GPU."
    )
    parser.add_argument("--version", action="version", version=f"ppx-desktop {__version__}")
    # Without a subcommand the desktop app opens; these options are for it (ppx_desktop/launcher.py).
    app = parser.add_argument_group("desktop app (no COMMAND)")
    app.add_argument("--demo", action="store_true",
                     help="open the app on a tiny random demo model (no GPU, no download)")
    app.add_argument("--model-dir", dest="app_model_dir",
                     help="open the app on this model directory instead of the downloaded one")
    app.add_argument("--self-test", action="store_true",
                     help="start offscreen, run one turn of the demo model through the test audio device, "
                     "exit 0 on success")
    app.add_argument("--install-desktop-entry", action="store_true",
                     help="add ppx-desktop to your desktop's application menu (Linux) or Start menu (Windows)")
    app.add_argument("--uninstall-desktop-entry", action="store_true", help="remove that menu entry again")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        from .launcher import launch

        return int(launch(args) or 0)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError) as exc:
        # Our loaders raise ValueError subclasses (ConfigError, CheckpointError, VoiceError,
        # AudioFileError, TokenizerError) with messages written for the user.
        print(f"ppx-desktop {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file system refused something no check foresaw: say which file
        what = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "") if exc.filename else "a file"
        print(f"ppx-desktop {args.command}: error: {exc.strerror or exc} ({what}). Check that the path exists, "
              "that you may read and write it, and that the disk has free space", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line for the user, the traceback in the log file
        print(f"ppx-desktop {args.command}: unexpected error: {type(exc).__name__}: {exc}. "
              f"{_log_traceback(args.command)}", file=sys.stderr)
        return 2


def _log_traceback(command: str) -> str:
    """Writes the current exception's traceback to the log file; says where (or that it could not)."""
    import logging

    try:
        from .logs import setup_logging

        path = setup_logging(console=False)
        logging.getLogger("ppx_desktop.cli").exception("%s failed", command)
        return f"This is a bug in ppx-desktop; the details are in {path}"
    except Exception:  # no writable log folder either: the message above is all there is
        return "This is a bug in ppx-desktop (the log file could not be written)"


if __name__ == "__main__":
    sys.exit(main())
