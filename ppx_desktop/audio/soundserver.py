"""The sound server's own devices (PulseAudio, or PipeWire's PulseAudio service) by their names.

Through ALSA, PortAudio sees a sound server only as the pseudo-devices "pulse" and "default",
so a device list made from PortAudio alone offers no choice of microphone or speakers on a
Linux desktop. The server knows its sinks and sources ("Built-in Audio Analog Stereo", "USB
headset"): `server_devices` asks it with `pactl`, and a device chosen from that list is written
``pulse:<name>``. Opening one means opening PortAudio's "pulse" device with ``PULSE_SOURCE`` /
``PULSE_SINK`` naming it: libpulse reads them when the ALSA plugin connects, which happens
while the stream is opened, so they are set only around that (`environment`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

PREFIX = "pulse:"
ENV = {"input": "PULSE_SOURCE", "output": "PULSE_SINK"}
# PortAudio device names that reach the server, in order of preference.
GATEWAYS = ("pulse", "pipewire", "default")


@dataclass(frozen=True)
class ServerDevice:
    name: str  # the server's name, e.g. "alsa_output.pci-0000_00_1f.3.analog-stereo"
    description: str  # what people read, e.g. "Built-in Audio Analog Stereo"
    kind: str  # "input" | "output"
    is_default: bool = False

    @property
    def spec(self) -> str:
        """The device as `AudioConfig.input_device` / `output_device` take it."""
        return PREFIX + self.name


def _run_pactl(args: list[str]) -> str | None:
    exe = shutil.which("pactl")
    if exe is None:
        return None
    try:
        result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("pactl %s failed: %s", " ".join(args), exc)
        return None
    if result.returncode != 0:
        log.info("pactl %s failed: %s", " ".join(args), result.stderr.strip())
        return None
    return result.stdout


def server_devices(run: Callable[[list[str]], str | None] = _run_pactl) -> list[ServerDevice]:
    """The server's sources (microphones; the monitors of outputs left out) and sinks; [] when
    there is no server or no pactl."""
    info = run(["--format=json", "info"])
    defaults = {}
    if info:
        try:
            data = json.loads(info)
            defaults = {"input": data.get("default_source_name"), "output": data.get("default_sink_name")}
        except (ValueError, AttributeError):
            pass
    out: list[ServerDevice] = []
    for kind, what in (("input", "sources"), ("output", "sinks")):
        text = run(["--format=json", "list", what])
        if not text:
            continue
        try:
            entries = json.loads(text)
        except ValueError:
            log.info("pactl gave no JSON for %s", what)
            continue
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            props = entry.get("properties") if isinstance(entry.get("properties"), dict) else {}
            if kind == "input" and (entry.get("monitor_of_sink") not in (None, "", "n/a")
                                    or props.get("device.class") == "monitor" or entry["name"].endswith(".monitor")):
                continue  # what an output plays, not a microphone
            name = entry["name"]
            description = entry.get("description") if isinstance(entry.get("description"), str) else name
            out.append(ServerDevice(name, description or name, kind, name == defaults.get(kind)))
    return out


def is_server_spec(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def route(spec, kind: str, portaudio_names: list[str]) -> tuple[object, dict[str, str]]:
    """(the PortAudio device to open, the environment to open it in) for a device spec."""
    if not is_server_spec(spec):
        return spec, {}
    lowered = [n.lower() for n in portaudio_names]
    gateway = next((portaudio_names[lowered.index(g)] for g in GATEWAYS if g in lowered), None)
    if gateway is None:
        from .devices import AudioDeviceError

        raise AudioDeviceError(f"The sound server's device {spec[len(PREFIX):]!r} was chosen, but PortAudio offers "
                               "no 'pulse' device to reach it: install libasound2-plugins, or choose another "
                               "device in the settings.")
    return gateway, {ENV[kind]: spec[len(PREFIX):]}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Sets `values` in the process environment for the duration (then restores it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
