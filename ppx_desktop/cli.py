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
}


class UserError(Exception):
    """An error the user can fix; printed as one clear line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppx-desktop", description="Talk with NVIDIA PersonaPlex on your own GPU."
    )
    parser.add_argument("--version", action="version", version=f"ppx-desktop {__version__}")
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
        parser.print_help()
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
