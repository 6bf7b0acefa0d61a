"""The Qt face of the session layer: worker and controller events become one Qt signal.

`InferenceWorker` and `ConversationController` call back from their own threads; emitting a
Signal from there is queued by Qt to the GUI thread (the receivers live there), so widgets are
only ever touched on the GUI thread. Slots submit commands; nothing here blocks on the model.
The audio layer's own events (a device lost or back, the agent's voice heard in the microphone)
and whether the devices could be opened at all (`AudioStatus`) come through the same signal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..audio.vad import VadConfig
from ..session.controller import ConversationController
from ..session.events import (
    CreateVoice,
    LoadModel,
    PreviewVoice,
    Reset,
    SetTranscription,
    StartConversation,
    VoiceCreated,  # noqa: F401 (the window imports it from here)
)
from ..session.worker import InferenceWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioStatus:
    """Whether the audio devices are open; `message` says what failed and what to do."""

    ok: bool
    message: str = ""


class EngineBridge(QObject):
    """Args:
        audio: the `AudioIO` the conversation uses (the worker's agent frames are written to it).
        vad: hands-free turn detection settings.
    """

    event = Signal(object)

    def __init__(self, audio, vad: VadConfig, parent=None) -> None:
        super().__init__(parent)
        self.audio = audio
        audio.on_event = self.event.emit  # device lost/restored, echo heard: called on the audio threads
        self.worker = InferenceWorker(on_event=self._from_worker)
        self.controller = ConversationController(self.worker, audio, vad, on_event=self.event.emit)
        self.audio_ok = False
        self._started = False

    def start(self) -> None:
        """Starts the inference thread and opens the audio devices (an audio failure is reported, not raised)."""
        if self._started:
            return
        self._started = True
        self.worker.start()
        self._open_audio()

    @property
    def started(self) -> bool:
        return self._started

    def _open_audio(self) -> None:
        try:
            self.controller.open()
        except Exception as exc:  # device errors from PortAudio vary by platform; the message is what matters
            log.warning("audio devices could not be opened: %s", exc)
            self.audio_ok = False
            self.event.emit(AudioStatus(False, f"No sound: {exc}"))
            return
        self.audio_ok = True
        self.event.emit(AudioStatus(True))

    def retry_audio(self) -> None:
        """Looks for the devices again (after plugging one in or starting the sound server)."""
        if self.audio_ok:
            return
        from ..audio.devices import rescan

        try:
            rescan(self.audio.backend)  # PortAudio lists devices once; a new one needs a fresh look
        except Exception as exc:  # no PortAudio at all: opening reports it with advice
            log.info("device rescan failed: %s", exc)
        self.controller.close()
        self._open_audio()

    def use_audio(self, audio) -> None:
        """Switches to other devices (the settings changed) without restarting the app; a live
        duplex session ends. A failure to open them is reported like any other."""
        old = self.audio
        old.on_event = None
        audio.on_event = self.event.emit
        audio.set_volume(old.volume)
        self.controller.close()
        self.controller.replace_audio(audio)  # not capturing now: only swaps
        self.audio = audio
        try:
            old.close()
        except Exception:  # a device that vanished cannot be closed cleanly
            log.exception("closing the old audio devices failed")
        if self._started:
            self._open_audio()

    def _from_worker(self, event) -> None:
        self.controller.on_worker_event(event)
        self.event.emit(event)

    # --- commands ---

    def load_model(self, model_dir=None, demo: bool = False, device: str | None = None, dtype: str | None = None,
                   quant: str | None = None, offload_layers: int | None = 0, context: int | None = None,
                   transcription: bool = False) -> None:
        self.worker.submit(LoadModel(model_dir=model_dir, demo=demo, device=device, dtype=dtype, quant=quant,
                                     offload_layers=offload_layers, context=context, transcription=transcription))

    def set_transcription(self, on: bool) -> None:
        """Speech-to-text on (loaded if it fits) or off (its memory freed); the conversation restarts."""
        self.worker.submit(SetTranscription(on))

    def start_conversation(self, voice: str, prompt: str, sampling=None, seed: int | None = None,
                           context=None) -> None:
        self.worker.submit(StartConversation(voice=voice, prompt=prompt, sampling=sampling, seed=seed,
                                             context=context))

    def new_conversation(self) -> None:
        self.controller.interrupt()
        self.worker.submit(Reset())

    def set_mode(self, mode: str) -> None:
        self.controller.set_mode(mode)

    def set_response(self, max_steps: int, early_stop: bool) -> None:
        self.controller.set_response(max_steps, early_stop)

    def set_vad(self, vad: VadConfig) -> None:
        self.controller.set_vad(vad)

    def set_end_of_turn(self, mode: str) -> None:
        """Hands-free turns end after a silence, or when the speech-to-text model hears the user finish."""
        self.controller.set_end_of_turn(mode)

    def press(self) -> None:
        self.controller.press()

    def release(self) -> None:
        self.controller.release()

    def set_listening(self, on: bool) -> None:
        self.controller.set_listening(on)

    def toggle_listening(self) -> None:
        self.controller.toggle_listening()

    def set_muted(self, on: bool) -> None:
        self.controller.set_muted(on)

    def set_volume(self, volume: float) -> None:
        self.audio.set_volume(volume)

    def set_echo(self, mode: str) -> None:
        self.audio.set_echo_mode(mode)

    def preview_voice(self, voice: str, prompt: str = "") -> None:
        self.worker.submit(PreviewVoice(voice=voice, prompt=prompt))

    def interrupt(self) -> None:
        self.controller.interrupt()

    def create_voice(self, name: str, wav_path, consent: bool) -> None:
        """Makes a custom voice from a recording on the loaded model: a command to the inference
        thread (the model's only user), answered by `VoiceCreated` or an `ErrorEvent` on `event`."""
        self.worker.submit(CreateVoice(name, wav_path, consent))

    def play(self, pcm) -> None:
        """Plays the user's own audio back (what the model heard), while the agent is quiet."""
        self.controller.replay(np.asarray(pcm, dtype=np.float32))

    def shutdown(self, timeout: float = 1.0) -> bool:
        """Stops capture and the inference thread; True if the worker ended within `timeout`."""
        if not self._started:
            return True
        self._started = False
        t0 = time.monotonic()
        # The worker winds down (cancel within one step) while capture and the devices close.
        self.worker.request_shutdown()
        self.controller.close(timeout=timeout / 2)
        t1 = time.monotonic()
        try:
            self.audio.close()
        except Exception:  # closing a failed device must not block quitting
            log.exception("closing the audio devices failed")
        t2 = time.monotonic()
        ended = self.worker.wait(max(0.05, timeout - (t2 - t0)))
        log.info("shutdown: capture %.2f s, audio %.2f s, inference thread %.2f s (%s)", t1 - t0, t2 - t1,
                 time.monotonic() - t2, "ended" if ended else "still running")
        return ended
