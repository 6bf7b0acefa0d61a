"""The sound server's named devices: listing through pactl, and opening one through PortAudio."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from audio_fakes import FakeSoundDevice

from ppx_desktop.audio import soundserver
from ppx_desktop.audio.devices import AudioDeviceError
from ppx_desktop.audio.mictest import MicTest

INFO = {"default_sink_name": "alsa_output.analog", "default_source_name": "alsa_input.analog"}
SOURCES = [
    {"name": "alsa_output.analog.monitor", "description": "Monitor of Built-in Audio", "monitor_of_sink": "n/a",
     "properties": {"device.class": "monitor"}},
    {"name": "alsa_input.analog", "description": "Built-in Audio Analog Stereo", "properties": {}},
    {"name": "bluez_input.headset", "description": "WH-1000XM4", "monitor_of_sink": None},
]
SINKS = [{"name": "alsa_output.analog", "description": "Built-in Audio Analog Stereo"},
         {"name": "bluez_output.headset", "description": "WH-1000XM4"}]


def fake_pactl(args):
    return json.dumps({"info": INFO, "sources": SOURCES, "sinks": SINKS}[args[-1]])


def test_server_devices_by_their_names_without_monitors():
    devices = soundserver.server_devices(fake_pactl)
    assert [(d.kind, d.description, d.is_default) for d in devices] == [
        ("input", "Built-in Audio Analog Stereo", True), ("input", "WH-1000XM4", False),
        ("output", "Built-in Audio Analog Stereo", True), ("output", "WH-1000XM4", False)]
    assert devices[1].spec == "pulse:bluez_input.headset"


@pytest.mark.parametrize("answer", [None, "", "not json", "[3, {\"no\": \"name\"}]"])
def test_no_server_or_garbage_gives_no_devices(answer):
    assert soundserver.server_devices(lambda args: answer) == []


def test_a_server_device_opens_through_portaudios_pulse_device():
    names = ["HDA Intel PCH: ALC3246 Analog (hw:0,0)", "sysdefault", "pulse", "default"]
    assert soundserver.route("pulse:bluez_output.headset", "output", names) == (
        "pulse", {"PULSE_SINK": "bluez_output.headset"})
    assert soundserver.route(3, "input", names) == (3, {})
    with pytest.raises(AudioDeviceError, match="libasound2-plugins"):
        soundserver.route("pulse:x", "input", ["HDA Intel PCH (hw:0,0)"])
    os.environ.pop("PULSE_SOURCE", None)
    with soundserver.environment({"PULSE_SOURCE": "mic"}):
        assert os.environ["PULSE_SOURCE"] == "mic"
    assert "PULSE_SOURCE" not in os.environ


def test_microphone_test_reports_the_level_of_what_arrives():
    sd = FakeSoundDevice(mic=np.concatenate([np.zeros(24_000, np.float32), np.full(24_000, 0.1, np.float32)]))
    test = MicTest(None, backend=sd)
    test.start()
    try:
        assert test.level_db() is None  # nothing yet
        sd.pump(50)  # 1 s of silence, in 20 ms blocks
        assert test.level_db() == -120.0
        sd.pump(20)  # then the tone
        assert test.level_db() == pytest.approx(-20.0, abs=0.01) and test.name == "Fake Mic"
    finally:
        test.stop()
    assert not test.running and sd.streams == []


def test_microphone_test_of_a_missing_device_says_so():
    sd = FakeSoundDevice()
    sd.plugged = False
    with pytest.raises(AudioDeviceError, match="No audio input device found"):
        MicTest(None, backend=sd).start()
