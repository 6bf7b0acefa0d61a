"""Voices: the preset catalogue, the downloaded `voices.tgz`, and the user's own voices.

A voice is a `.pt` file holding what the voice-prompt phase leaves behind (the temporal
transformer's inputs and the token cache), so a conversation replays it instead of encoding
audio. Presets come with the model (`MODEL_DIR/voices/NAME.pt`); custom voices are made once from
a recording with `create_custom_voice` and kept in the user's data folder.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import typing as tp
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..engine.config import VOICES_DIR
from ..engine.prompts import VoiceError
from ..paths import voices_dir
from .hub_names import inside
from .resources import ResourceError, load_resource_json

VOICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
ARCHIVE_ENTRY = re.compile(r"[A-Za-z0-9_-]{1,64}\.(pt|wav)")
MAX_ARCHIVE_ENTRY = 256 << 20  # a preset is a few MB; anything far larger is not a voice
MIN_SECONDS, MAX_SECONDS = 10.0, 30.0
SILENCE_PEAK = 1e-3  # -60 dBFS: nothing a microphone would call speech
CLIP_LEVEL, CLIP_FRACTION = 0.999, 1e-3  # more than 0.1 % of samples at full scale sounds distorted


class ArchiveError(ValueError):
    """`voices.tgz` is unreadable or holds something that must not be unpacked."""


@dataclass(frozen=True)
class VoiceInfo:
    id: str
    label: str
    gender: str | None  # "female" | "male"
    family: str | None  # "natural" | "variety" | "custom"
    description: str
    path: Path | None  # None: a preset of the catalogue that is not on disk
    custom: bool = False


def catalogue() -> list[dict]:
    data = load_resource_json("voices.json")
    voices = data.get("voices")
    if not isinstance(voices, list) or not all(isinstance(v, dict) and "id" in v for v in voices):
        raise ResourceError("bundled voices.json must list voices with an 'id': reinstall ppx-desktop")
    return voices


def list_voices(model_dir: Path | None) -> list[VoiceInfo]:
    """Catalogue presets (with `path` None when absent), then other `.pt` files in the model's
    `voices/`, then the user's custom voices."""
    on_disk = {}
    if model_dir is not None and (Path(model_dir) / VOICES_DIR).is_dir():
        on_disk = {p.stem: p for p in sorted((Path(model_dir) / VOICES_DIR).glob("*.pt"))}
    out = []
    for entry in catalogue():
        out.append(VoiceInfo(entry["id"], entry.get("label", entry["id"]), entry.get("gender"),
                             entry.get("family"), entry.get("description", ""), on_disk.pop(entry["id"], None)))
    for name, path in on_disk.items():
        out.append(VoiceInfo(name, name, None, None, "voice file found in the model folder", path))
    for path in sorted(voices_dir().glob("*.pt")):
        out.append(VoiceInfo(path.stem, path.stem, None, "custom", "your voice", path, custom=True))
    return out


def resolve_voice_path(spec: str, model_dir: Path | None) -> Path:
    """A preset or custom voice name, or a path to a `.pt` or audio file."""
    try:
        path = Path(spec).expanduser()
        if path.suffix and path.is_file():
            return path
    except (OSError, RuntimeError) as exc:  # an unreadable folder, an unknown ~user
        raise VoiceError(f"voice {spec!r} cannot be read ({exc}): check the path and its permissions") from exc
    voices = list_voices(model_dir)
    for voice in voices:
        if voice.id == spec and voice.path is not None:
            return voice.path
    names = ", ".join(v.id for v in voices if v.path is not None) or "none"
    raise VoiceError(f"unknown voice {spec!r}: not a file and not an installed voice. Available: {names}")


def usable_voices(model_dir: Path | None) -> list[VoiceInfo]:
    """The voices a conversation on this model can use by name: presets on disk, then custom."""
    return [v for v in list_voices(model_dir) if v.path is not None]


def open_voice(model, spec: str):
    """A voice by preset or custom name, or a `.pt` / audio path, loaded and checked against
    `model` (a `LoadedModel`). Returns `(VoicePrompt, path)`; the prompt's `notes` say what was
    done to an audio recording."""
    path = resolve_voice_path(spec, model.model_dir)
    return model.load_voice(path), path


def custom_voice_path(name: str) -> Path:
    if not VOICE_NAME.fullmatch(name or ""):
        raise VoiceError(f"invalid voice name {name!r}: use 1-40 letters, digits, '-' or '_'")
    return voices_dir() / f"{name}.pt"


def check_recording(audio, rate: int = 24_000) -> None:
    """Refuses recordings that would make a poor voice, saying why and what to do."""
    import numpy as np

    seconds = len(audio) / rate
    if seconds < MIN_SECONDS:
        raise VoiceError(f"the recording is too short ({seconds:.1f} s): record {MIN_SECONDS:.0f} to "
                         f"{MAX_SECONDS:.0f} s of the speaker talking naturally")
    if seconds > MAX_SECONDS:
        raise VoiceError(f"the recording is too long ({seconds:.1f} s): trim it to {MIN_SECONDS:.0f} to "
                         f"{MAX_SECONDS:.0f} s of clear speech")
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak < SILENCE_PEAK:
        raise VoiceError("the recording is silent: check that the right microphone was used and record again")
    clipped = float(np.mean(np.abs(audio) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise VoiceError(f"the recording is clipped ({clipped:.1%} of samples at full scale): lower the "
                         "microphone gain or move away from it, and record again")


def create_custom_voice(model, name: str, wav_path: str | Path, consent: bool, overwrite: bool = False,
                        progress: tp.Callable[[int, int], None] | None = None,
                        notes: list[str] | None = None) -> Path:
    """Runs the voice-prompt phase once on a 10-30 s recording and saves a `.pt` voice.

    Args:
        model: a `LoadedModel`; the file only fits models of its width.
        consent: the user confirmed the speaker agreed to having their voice cloned.
        progress: `progress(done_frames, total_frames)`.
        notes: receives what was done to the recording (a longer one is cut to its first 30 s,
            another rate resampled, ...), as sentences to show the user.
    """
    import torch

    from ..audio.files import AudioFileError, frames, normalize_loudness, read_audio
    from ..engine.config import FRAME_SIZE, SAMPLE_RATE
    from ..engine.generator import Generator
    from ..engine.prefill import Prefiller
    from ..engine.prompts import VoicePrompt, max_voice_seconds, save_voice_file
    from ..engine.sampling import SamplingConfig

    if not consent:
        raise VoiceError("making a voice from someone's recording needs their consent: confirm that the "
                         "speaker agreed (--yes-i-have-consent, or answer the question)")
    path = custom_voice_path(name)
    if name.upper() in {v["id"].upper() for v in catalogue()}:
        raise VoiceError(f"{name!r} is the name of a preset voice: choose another name")
    if path.exists() and not overwrite:
        raise VoiceError(f"a custom voice named {name!r} already exists: choose another name or remove it first "
                         f"(ppx-desktop voices remove {name})")
    try:
        done: list[str] = []
        keep = max(MIN_SECONDS, min(MAX_SECONDS, max_voice_seconds(model.config)))
        audio = read_audio(wav_path, SAMPLE_RATE, max_seconds=None, keep_seconds=keep, notes=done)
        check_recording(audio, SAMPLE_RATE)
        if notes is not None:
            notes.extend(done)
        audio = normalize_loudness(audio, SAMPLE_RATE)
    except AudioFileError as exc:
        raise VoiceError(str(exc)) from exc
    voice = VoicePrompt(name=name, frames=frames(audio, FRAME_SIZE))
    gen = Generator(model.lm, SamplingConfig.greedy())
    with torch.no_grad():
        # The voice phase only, as for the presets: the silences and persona come at conversation time.
        # Its file needs no transformer pass and no context-sized state (engine/prefill.py).
        emb, cache = Prefiller(gen).voice_file(model.config.prompt, model.mimi, voice,
                                               progress=None if progress is None else
                                               (lambda done: progress(done, len(voice.frames))))
    save_voice_file(path, emb, cache)
    return path


def remove_custom_voice(name: str) -> Path:
    path = custom_voice_path(name)
    if not path.is_file():
        mine = ", ".join(p.stem for p in sorted(voices_dir().glob("*.pt"))) or "none"
        raise VoiceError(f"no custom voice named {name!r} (yours: {mine}); presets cannot be removed")
    path.unlink()
    return path


def _unsafe(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PurePosixPath(name).is_absolute():
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a path leaving the folder ('..')"
    if member.issym() or member.islnk():
        return "a link"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "a device or pipe"
    if not (member.isfile() or member.isdir()):
        return "an entry of an unknown type"
    return None


def extract_voices(archive: Path, dest: Path) -> list[str]:
    """Unpacks the voice files of `voices.tgz` into `dest` (replacing it); returns their names.

    Nothing is written from an archive holding absolute paths, `..`, links or devices; files other
    than `voices/NAME.pt|wav` are skipped. Files are copied by content, never by tarfile's extract.
    """
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # check everything before writing anything
                why = _unsafe(member)
                if why:
                    raise ArchiveError(f"{archive.name} holds {why} ({member.name!r}); it was not unpacked. "
                                       "Delete it and download again")
            tmp.mkdir(parents=True)
            names = []
            for member in members:
                parts = [p for p in PurePosixPath(member.name).parts if p not in (".", "")]
                if not member.isfile() or len(parts) != 2 or parts[0] != VOICES_DIR:
                    continue
                if not ARCHIVE_ENTRY.fullmatch(parts[1]):
                    continue
                if member.size > MAX_ARCHIVE_ENTRY:
                    raise ArchiveError(f"{archive.name}: {member.name} is {member.size} bytes, too large for a voice")
                src = tar.extractfile(member)
                with src, inside(tmp, tmp / parts[1]).open("wb") as out:
                    shutil.copyfileobj(src, out)
                names.append(parts[1])
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"{archive} is not a readable voice archive ({exc}); delete it and download again") from exc
    except ArchiveError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not any(n.endswith(".pt") for n in names):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArchiveError(f"{archive.name} holds no voice files (expected {VOICES_DIR}/NAME.pt)")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return sorted(names)
