"""Which event is which problem in the window's banner, with what to do about it.

Each problem has the key of what resolves it: "audio" (the devices could not be opened) until
they open, "device_lost" until the device is back, "echo" until echo handling is on, "model"
until a model and its conversation are ready, "capture" until the microphone is reopened.
"""

from __future__ import annotations

from ..audio.stream import AudioEvent
from ..session import events as ev
from ..session.controller import ControllerError
from .engine_bridge import AudioStatus
from .settings import save_settings
from .widgets.problem_banner import Problem


class ProblemRouter:
    """Args:
        window: the main window (banner, bridge, settings, and the dialogs the actions open).
    """

    def __init__(self, window) -> None:
        self.window = window

    def handle(self, event) -> bool:
        """Shows or clears what `event` says; False when it is not about a problem."""
        w, banner = self.window, self.window.banner
        if isinstance(event, ev.ErrorEvent):
            self._error(event)
        elif isinstance(event, AudioStatus):
            if event.ok:
                banner.clear("audio")
            else:
                banner.set(Problem("audio", event.message + " Then press Retry, or choose devices in Settings.",
                                   "error", [("Retry", w.bridge.retry_audio), ("Settings…", w.open_settings)]))
        elif isinstance(event, AudioEvent):
            self._audio(event)
        elif isinstance(event, ControllerError):
            banner.set(Problem("capture", event.message + " Check the microphone, then retry.", "error",
                               [("Retry", w.bridge.retry_audio)]))
        elif isinstance(event, (ev.ConversationReady, ev.ModelLoaded)):
            banner.clear("model")
            return False  # the window has more to do with these
        else:
            return False
        return True

    def _error(self, event: ev.ErrorEvent) -> None:
        w = self.window
        if event.command in ("LoadModel", "StartConversation") or event.kind in ("model", "oom"):
            w.banner.set(Problem("model", event.message, "error",
                                 [("Settings…", w.open_settings), ("Model…", w.choose_model)]))
        elif event.command == "CreateVoice":
            w.banner.set(Problem("voice", f"The voice was not made: {event.message}", "error", dismissable=True))
        else:
            w.show_error(event.message)

    def _audio(self, event: AudioEvent) -> None:
        w = self.window
        if event.kind == "device_lost":
            w.banner.set(Problem("device_lost", event.message, "warning", [("Settings…", w.open_settings)]))
        elif event.kind == "device_restored":
            w.banner.clear("device_lost")
            w.statusBar().showMessage(event.message, 6000)
        elif event.kind == "echo_detected":
            w.banner.set(Problem("echo", event.message, "warning",
                                 [("Turn on echo cancellation", self.echo_on)], dismissable=True))

    def echo_on(self) -> None:
        w = self.window
        w.settings.echo = "aec3"
        w.bridge.set_echo("aec3")
        save_settings(w.settings, w.store)
        w.banner.clear("echo")
