"""Data files shipped with the app (voice catalogue, persona prompt presets).

They live inside the package (`ppx_desktop/resources/`) rather than at the repository's top
level so that an installed wheel carries them too; a symlink would not survive on Windows.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent.parent / "resources"


class ResourceError(ValueError):
    """A bundled data file is missing or malformed (a broken installation)."""


def resources_dir() -> Path:
    """The folder holding the bundled JSON catalogues."""
    return RESOURCES_DIR


def load_resource_json(name: str) -> dict:
    """A bundled JSON file; a missing or broken one means a broken install, and the message says so."""
    path = resources_dir() / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResourceError(f"bundled file {path} is missing: reinstall ppx-desktop") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResourceError(f"bundled file {path} is unreadable ({exc}): reinstall ppx-desktop") from exc
    if not isinstance(data, dict):
        raise ResourceError(f"bundled file {path} must hold a JSON object: reinstall ppx-desktop")
    return data


def write_json_atomic(path: Path, data: object) -> None:
    """Writes JSON next to its target and renames it over, so a crash never leaves half a file;
    the temporary name is this call's own, so two processes writing the same file never collide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
