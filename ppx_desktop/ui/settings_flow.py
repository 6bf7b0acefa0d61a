"""Settings from the window: the dialog on this machine's devices, and taking new settings into use.

Audio devices, echo handling and turn detection apply at once (the devices are reopened; a live
duplex session ends); sampling applies to the next conversation; the engine's settings when
the model is loaded again, which the banner offers to do now.
"""

from __future__ import annotations

import logging

from .engine_bridge import AudioStatus
from .settings import AppSettings, save_settings
from .widgets.problem_banner import Problem

log = logging.getLogger(__name__)
ENGINE_FIELDS = ("device", "dtype", "quant", "offload", "context_frames")


def dialog_for(window):
    """The settings dialog on this machine's devices (the sound server's by name), not yet shown."""
    from ..audio import list_devices
    from ..audio.mictest import MicTest
    from ..audio.soundserver import server_devices
    from .settings_dialog import SettingsDialog

    try:
        backend = window.bridge.audio.backend
        devices = list_devices(backend)
    except Exception as exc:  # no audio subsystem: still let the user edit the rest
        log.warning("cannot list audio devices: %s", exc)
        backend, devices = None, []
    return SettingsDialog(window.settings, devices, window, server=server_devices(),
                          mic_test=None if backend is None else (lambda spec: MicTest(spec, backend)))


def apply(window, new: AppSettings) -> None:
    """Takes `new` into use where it can at once, and stores it."""
    from ..audio.vad import VadConfig

    old, window.settings = window.settings, new
    bridge = window.bridge
    bridge.set_vad(VadConfig(end_silence_s=new.vad_end_silence_s, threshold=new.vad_threshold))
    bridge.set_end_of_turn(new.end_of_turn)
    if (old.input_device, old.output_device) != (new.input_device, new.output_device) \
            and window.audio_factory is not None:
        try:
            bridge.use_audio(window.audio_factory(new))
        except Exception as exc:  # PortAudio missing: said in the window like a missing device
            window.problems.handle(AudioStatus(False, f"No sound: {exc}"))
    if old.echo != new.echo:
        bridge.set_echo(new.echo)
        if new.echo != "off":
            window.banner.clear("echo")
    if old.transcription != new.transcription and window.model_ready:
        bridge.set_transcription(new.transcription)  # applies now; off frees its GPU memory
    if any(getattr(old, f) != getattr(new, f) for f in ENGINE_FIELDS) and window.worker_state:
        def reload() -> None:
            window.banner.clear("engine")
            window.load_model(window.model_dir if not window.demo else None, window.demo)

        window.banner.set(Problem("engine", "The engine settings take effect when the model is loaded again.",
                                  "info", [("Reload now", reload)], dismissable=True))
    save_settings(window.settings, window.store)
