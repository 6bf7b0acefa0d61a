"""Audio devices: listing, choosing by index or name, and the sounddevice backend loader.

A *backend* is the ``sounddevice`` module or anything with the same small surface
(``query_devices``, ``query_hostapis``, ``default.device``, ``Stream``/``InputStream``/``OutputStream``,
``check_input_settings``/``check_output_settings``, ``PortAudioError``); tests pass a fake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class AudioDeviceError(RuntimeError):
    """No usable audio device, or the sound system is missing; the message says what to do."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    is_default_input: bool
    is_default_output: bool


_HEADPHONE_WORDS = re.compile(r"head(phone|set)|earphone|earbud|airpods|buds", re.IGNORECASE)


def looks_like_headphones(name: str) -> bool:
    """True for output names that suggest headphones (echo handling can then be off)."""
    return bool(_HEADPHONE_WORDS.search(name or ""))


def load_backend() -> Any:
    """Import sounddevice, turning its missing-PortAudio error into advice."""
    try:
        import sounddevice
    except OSError as e:  # the Linux wheel has no PortAudio inside
        raise AudioDeviceError(
            f"PortAudio is not installed ({e}). On Debian/Ubuntu run: sudo apt-get install libportaudio2"
        ) from e
    return sounddevice


def _defaults(backend: Any) -> tuple[int, int]:
    dev = backend.default.device
    try:
        d_in, d_out = dev[0], dev[1]
    except TypeError:
        d_in = d_out = dev
    return (-1 if d_in is None else int(d_in)), (-1 if d_out is None else int(d_out))


def list_devices(backend: Any = None) -> list[DeviceInfo]:
    """All devices PortAudio sees, with host API names and which ones are the defaults."""
    backend = backend if backend is not None else load_backend()
    hostapis = backend.query_hostapis()
    d_in, d_out = _defaults(backend)
    out = []
    for i, d in enumerate(backend.query_devices()):
        api = hostapis[d["hostapi"]]["name"] if 0 <= d["hostapi"] < len(hostapis) else "?"
        out.append(
            DeviceInfo(
                index=i,
                name=str(d["name"]),
                hostapi=str(api),
                max_input_channels=int(d["max_input_channels"]),
                max_output_channels=int(d["max_output_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                is_default_input=i == d_in,
                is_default_output=i == d_out,
            )
        )
    return out


def resolve_device(spec: int | str | None, kind: str, devices: list[DeviceInfo]) -> DeviceInfo:
    """Pick the ``kind`` ("input"/"output") device for ``spec``: None = default, int = index, str = name part."""
    channels = (lambda d: d.max_input_channels) if kind == "input" else (lambda d: d.max_output_channels)
    usable = [d for d in devices if channels(d) > 0]
    if not usable:
        raise AudioDeviceError(
            f"No audio {kind} device found. Plug in a {'microphone' if kind == 'input' else 'speaker or headset'}, "
            "or start your sound server (PulseAudio/PipeWire), then try again."
        )
    names = ", ".join(f"{d.index}: {d.name}" for d in usable)
    if spec is None:
        for d in usable:
            if (d.is_default_input if kind == "input" else d.is_default_output):
                return d
        return usable[0]
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        for d in usable:
            if d.index == idx:
                return d
        raise AudioDeviceError(f"Audio {kind} device {idx} does not exist or has no {kind}s; choose one of: {names}")
    needle = str(spec).lower()
    exact = [d for d in usable if d.name.lower() == needle]
    matches = exact or [d for d in usable if needle in d.name.lower()]
    if not matches:
        raise AudioDeviceError(f"No audio {kind} device matches {spec!r}; choose one of: {names}")
    if len(matches) > 1:
        found = ", ".join(f"{d.index}: {d.name}" for d in matches)
        raise AudioDeviceError(f"{spec!r} matches several {kind} devices ({found}); use the index instead.")
    return matches[0]


def rescan(backend: Any) -> None:
    """Make PortAudio enumerate devices again (it caches the list from its initialisation).

    sounddevice exposes this only as ``_terminate``/``_initialize``; without it a re-plugged headset
    would never reappear. Call only when no stream is open.
    """
    term, init = getattr(backend, "_terminate", None), getattr(backend, "_initialize", None)
    if term is None or init is None:
        return
    try:
        term()
    finally:
        init()
