"""Persona prompts: presets from the PersonaPlex prompting guide, plus prompts the user saves.

Presets are templates with `{field}` placeholders (the customer-service role's company, agent
and information; the casual conversation's topic). User prompts are plain text files in the
user's data folder, one per name.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from ..paths import prompts_dir
from .resources import ResourceError, load_resource_json

PROMPT_NAME = re.compile(r"[A-Za-z0-9 _-]{1,60}")


class PromptError(ValueError):
    """A prompt cannot be rendered, saved or deleted; the message says why."""


@dataclass(frozen=True)
class PromptField:
    name: str
    label: str
    default: str = ""


@dataclass(frozen=True)
class PromptPreset:
    id: str
    title: str
    template: str
    fields: tuple[PromptField, ...] = ()
    description: str = ""
    user: bool = False  # saved by the user (plain text, no fields)

    def render(self, values: dict[str, str] | None = None) -> str:
        """The prompt text with every `{field}` filled from `values`; a missing or empty value is an error."""
        values = values or {}
        missing = [f.label for f in self.fields if not str(values.get(f.name, "")).strip()]
        if missing:
            raise PromptError(f"the prompt {self.title!r} needs: {', '.join(missing)}")
        if not self.fields:
            return self.template
        return self.template.format(**{f.name: str(values[f.name]).strip() for f in self.fields})

    def defaults(self) -> dict[str, str]:
        return {f.name: f.default for f in self.fields}


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def presets() -> list[PromptPreset]:
    data = load_resource_json("prompts.json")
    out = []
    for entry in data.get("prompts") or []:
        try:
            fields = tuple(PromptField(f["name"], f.get("label", f["name"]), f.get("default", ""))
                           for f in entry.get("fields", []))
            preset = PromptPreset(entry["id"], entry.get("title", entry["id"]), entry["template"], fields,
                                  entry.get("description", ""))
        except (KeyError, TypeError) as exc:
            raise ResourceError(f"bundled prompts.json has a malformed entry ({exc}): reinstall ppx-desktop") from exc
        if _placeholders(preset.template) != {f.name for f in fields}:
            raise ResourceError(f"bundled prompts.json: the fields of {preset.id!r} do not match its template")
        out.append(preset)
    return out


def _user_path(name: str):
    if not PROMPT_NAME.fullmatch(name or "") or name.strip() != name:
        raise PromptError(f"invalid prompt name {name!r}: use 1-60 letters, digits, spaces, '-' or '_'")
    return prompts_dir() / f"{name}.txt"


def user_prompts() -> list[PromptPreset]:
    out = []
    for path in sorted(prompts_dir().glob("*.txt")):
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable file is skipped, not fatal to the list
        # Braces in a user's text are literal: it is never formatted.
        out.append(PromptPreset(f"user:{path.stem}", path.stem, text, (), "your prompt", user=True))
    return out


def list_prompts() -> list[PromptPreset]:
    """The bundled presets, then the user's saved prompts."""
    return presets() + user_prompts()


def save_user_prompt(name: str, text: str, overwrite: bool = True) -> PromptPreset:
    path = _user_path(name)
    text = (text or "").strip()
    if not text:
        raise PromptError("the prompt is empty: write what the model should be")
    if path.exists() and not overwrite:
        raise PromptError(f"a prompt named {name!r} already exists")
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)
    return PromptPreset(f"user:{name}", name, text, (), "your prompt", user=True)


def delete_user_prompt(name: str) -> None:
    path = _user_path(name)
    if not path.is_file():
        raise PromptError(f"no saved prompt named {name!r}")
    path.unlink()


__all__ = ["PromptError", "PromptField", "PromptPreset", "delete_user_prompt", "list_prompts", "presets",
           "save_user_prompt", "user_prompts"]
