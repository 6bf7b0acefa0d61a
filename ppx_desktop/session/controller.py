"""Routes the microphone to the inference worker by conversation mode (no Qt; the window drives it).

One capture thread reads `AudioIO.read_frame` and, by mode:

- "ptt": collects frames while the talk control is held; on release submits `Respond`.
- "handsfree": feeds a `TurnDetector`; a detected end of speech submits `Respond`. While the
  agent answers (a turn pending, the worker busy or audio still playing) the microphone is
  ignored and the detector reset, so the agent's own voice never starts a turn; listening
  resumes by itself once playback ends. With the semantic end of turn (session/semantic_turn.py)
  a turn is streamed instead: `StartTurn` once speech starts, every frame to
  `worker.push_turn_frame`, and `EndTurn` when the speech-to-text model's end-of-turn score says
  the user has finished (or, as before, after the silence).
- "duplex": after `StartDuplex`, every captured frame goes to `worker.push_frame`.

The conversation (the worker's streaming state) is untouched by mode switches, but listening
is not: a switch leaves the new mode stopped (a hands-free session does not become a live duplex
one by itself). Every captured frame is also paired with the agent frame being played at that
moment and added to a `Recorder`, so the saved stereo WAV lines up both sides in time; stretches
where nobody talks are shortened (`IDLE_KEPT_S`), so the recording holds the turns, not the
hours the window was open.

Commands from the GUI thread (press, release, mode, listening) are queued and applied by the
capture thread, so all routing state has a single owner and needs no lock.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..audio.levels import ActivityHold
from ..audio.recorder import Recorder
from ..audio.vad import TurnDetector, VadConfig
from .events import EndOfTurnScore, EndTurn, ErrorEvent, Respond, StartDuplex, StartTurn, StopDuplex, TurnFinished
from .semantic_turn import END_OF_TURN_MODES, SemanticEndOfTurn, SemanticTurnRule

log = logging.getLogger(__name__)

SAMPLE_RATE = 24_000
FRAME = 1920
MODES = ("ptt", "handsfree", "duplex")
# Below this the output is treated as silent when guessing whether the duplex agent is talking.
SPEAKING_DB = -45.0
SPEAKING_HOLD_FRAMES = 8  # 640 ms: the duplex agent "speaks" through the pauses between its words
IDLE_KEPT_S = 1.0  # idle stretches in the recording are shortened to this


@dataclass(frozen=True)
class UserTurn:
    """The user's side of a turn as the model received it (duplex: the whole live stretch)."""

    turn_id: int
    mode: str
    audio: np.ndarray  # 24 kHz mono float32
    started: float  # wall clock of the first frame
    duration_s: float
    ended_by: str = ""  # hands-free: "silence", "semantic" or "max_length"; "" for the other modes


@dataclass(frozen=True)
class ListenState:
    """What the microphone side is doing: "ready" (push to talk, idle), "listening", "hearing_you",
    "waiting" (a turn was submitted; the worker's Status tells thinking/speaking), "speaking"
    (agent audio still playing), "replaying" (the user's own turn is played back), "stopped"
    (hands-free or duplex not listening). `muted`: the model hears silence instead of the mic."""

    state: str
    mode: str
    muted: bool = False


@dataclass(frozen=True)
class ControllerError:
    message: str


class ConversationController:
    """Args:
        worker: an `InferenceWorker` (submit, push_frame, cancel, busy, audio_sink).
        audio: an `AudioIO`; the controller starts and stops it.
        vad: turn detection settings for hands-free mode.
        on_event: called from the capture thread with `UserTurn`, `ListenState`, `ControllerError`.
        recorder: where both sides are recorded (a new `Recorder` if None).
    """

    def __init__(self, worker, audio, vad: VadConfig, on_event: Callable[[object], None],
                 recorder: Recorder | None = None) -> None:
        self.worker = worker
        self.audio = audio
        self.on_event = on_event
        self.recorder = recorder if recorder is not None else Recorder(max_idle_s=IDLE_KEPT_S)
        self._vad = vad
        self._detector = TurnDetector(vad)
        self.end_of_turn = "silence"  # hands-free: "silence" or "semantic" (set_end_of_turn)
        self._semantic = SemanticEndOfTurn()
        self.mode = "ptt"
        self.max_steps = 75
        self.early_stop = True
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._agent_frames: collections.deque = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_turn = 1
        # capture-thread state
        self._listening = False  # hands-free / duplex switched on
        self._pressed = False
        self._held: list[np.ndarray] = []
        self._held_started = 0.0
        self._pending_turn = 0  # a submitted Respond (or StartTurn) not yet finished
        self._live_turn = 0  # a streamed hands-free turn whose user part is still being heard
        self._live_frames: list[np.ndarray] = []
        self._live_started = 0.0
        self._in_speech = False
        self._duplex_turn = 0
        self._duplex_frames: list[np.ndarray] = []
        self._duplex_started = 0.0
        self._state: ListenState | None = None
        self._muted = False
        self._replaying = False
        self._agent_voice = ActivityHold(SPEAKING_DB, SPEAKING_HOLD_FRAMES)
        self.frames_captured = 0
        # The recorder is appended to by the capture thread and saved from the GUI thread.
        self._rec_lock = threading.Lock()
        worker.audio_sink = self._on_agent_frame
        worker.preview_sink = self._on_preview_frame

    # --- GUI-thread API (queued) ---

    def open(self) -> None:
        """Starts the audio streams and the capture thread."""
        if self._thread is not None:
            return
        self.audio.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ppx-capture", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        """Leaves duplex, stops the capture thread and the audio streams."""
        if self._thread is None:
            return
        self._commands.put(("close", None))
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None
        self.audio.stop()

    def replace_audio(self, audio) -> None:
        """Carries on with other audio devices (settings changed): stops capture (a live duplex
        session ends), swaps the `AudioIO` and starts again; raises what `audio.start()` raises."""
        running = self._thread is not None
        self.close()
        self.audio = audio
        self._agent_frames.clear()
        if running:
            self.open()

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self._commands.put(("mode", mode))

    def set_response(self, max_steps: int, early_stop: bool) -> None:
        # Read by the capture thread when it submits the next Respond; plain attribute writes are atomic.
        self.max_steps = int(max_steps)
        self.early_stop = bool(early_stop)

    def set_vad(self, vad: VadConfig) -> None:
        self._commands.put(("vad", vad))

    def set_end_of_turn(self, mode: str, rule: SemanticTurnRule | None = None) -> None:
        """Hands-free turns end after a silence ("silence") or when the speech-to-text model says
        the user has finished ("semantic", with the silence as the fallback)."""
        if mode not in END_OF_TURN_MODES:
            raise ValueError(f"unknown end of turn {mode!r}: choose one of {', '.join(END_OF_TURN_MODES)}")
        self._commands.put(("end_of_turn", (mode, rule)))

    def press(self) -> None:
        self._commands.put(("press", None))

    def release(self) -> None:
        self._commands.put(("release", None))

    def set_listening(self, on: bool) -> None:
        """Hands-free and duplex: switch the microphone on or off (duplex starts/stops the stream)."""
        self._commands.put(("listen", bool(on)))

    def toggle_listening(self) -> None:
        """Start/stop as one command, applied in order with everything else: the switch's state
        has one owner (the capture thread), so quick presses and a session the worker ended
        never make the control read backwards."""
        self._commands.put(("toggle", None))

    def set_muted(self, on: bool) -> None:
        """While muted the model hears silence (turns cannot start; duplex goes on, deaf)."""
        self._commands.put(("mute", bool(on)))

    def replay(self, pcm: np.ndarray) -> None:
        """Plays the user's own audio back while the agent is quiet (shown as "replaying")."""
        self._commands.put(("replay", np.asarray(pcm, dtype=np.float32).reshape(-1)))

    def interrupt(self) -> None:
        """Stops the agent now: the running turn and the queued playback (a latched stop)."""
        self.worker.cancel()
        self.audio.clear_playback()
        self._agent_frames.clear()

    def on_worker_event(self, event) -> None:
        """Feed the worker's events here (any thread): a finished turn lets hands-free listen again;
        a live session the worker ended (stopped, an error) is over for the microphone too."""
        if isinstance(event, TurnFinished) and event.mode == "duplex":
            self._commands.put(("duplex_ended", event.turn_id))
        elif isinstance(event, ErrorEvent) and event.command == "StartDuplex":
            self._commands.put(("duplex_ended", None))
        if isinstance(event, EndOfTurnScore):
            self._commands.put(("eot", event))
        elif isinstance(event, TurnFinished) or (isinstance(event, ErrorEvent)
                                                 and event.command in ("Respond", "StartTurn")):
            self._commands.put(("finished", getattr(event, "turn_id", None)))

    def save_recording(self, path) -> None:
        """Writes the stereo WAV (agent left, user right) of everything recorded so far."""
        with self._rec_lock:
            self.recorder.save_stereo_wav(path)

    def clear_recording(self) -> None:
        with self._rec_lock:
            self.recorder.clear()

    def recorded_tracks(self):
        with self._rec_lock:
            return self.recorder.tracks()

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def state(self) -> str:
        return self._state.state if self._state is not None else ""

    @property
    def muted(self) -> bool:
        return self._muted

    # --- agent audio (worker thread) ---

    def _on_agent_frame(self, pcm: np.ndarray) -> None:
        self.audio.write_frame(pcm)
        self._agent_frames.append(np.asarray(pcm, dtype=np.float32))

    def _on_preview_frame(self, pcm: np.ndarray) -> None:
        # A voice preview is heard like a replay, and kept out of the conversation's recording.
        self.audio.write_frame(pcm)
        self._replaying = True

    # --- capture thread ---

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._apply_commands()
                frame = self.audio.read_frame(timeout=0.05)
                if frame is None:
                    self._update_state()
                    continue
                self.frames_captured += 1
                self._route(np.asarray(frame, dtype=np.float32))
                self._update_state()
        except Exception as exc:  # a dead capture thread would silently deafen the app
            log.exception("capture thread failed")
            self.on_event(ControllerError(f"The microphone stopped working: {exc}"))
        finally:
            self._apply_commands()
            if self._duplex_turn:
                self._stop_duplex()
            self._abort_live_turn()  # the microphone goes away (closing, new devices): its turn is not answered

    def _apply_commands(self) -> None:
        while True:
            try:
                name, value = self._commands.get_nowait()
            except queue.Empty:
                return
            if name == "mode":
                self._switch_mode(value)
            elif name == "press":
                self._press()
            elif name == "release":
                self._release()
            elif name == "listen":
                self._set_listening(value)
            elif name == "toggle":
                self._set_listening(not self._listening)
            elif name == "finished":
                if self._live_turn and value in (None, self._live_turn):  # the worker ended it (an error)
                    self._end_live_turn("", tell_worker=False)
                if value is None or value == self._pending_turn:
                    self._pending_turn = 0
            elif name == "eot":
                if (self._live_turn == value.turn_id and self.end_of_turn == "semantic"
                        and self._semantic.push(value.probability, self._detector.silence_s)):
                    self._end_live_turn("semantic")
            elif name == "end_of_turn":
                self.end_of_turn, rule = value
                self._semantic = SemanticEndOfTurn(rule or self._semantic.rule)
            elif name == "vad":
                if value == self._vad:  # Settings applied with the same detection: nothing changes
                    continue
                self._abort_live_turn()
                self._vad = value
                self._detector = TurnDetector(value)
                self._in_speech = False
            elif name == "mute":
                self._abort_live_turn()
                self._muted = value
                self._detector.reset()
                self._in_speech = False
            elif name == "replay":
                self._replay(value)
            elif name == "duplex_ended":
                if self._duplex_turn and value in (None, self._duplex_turn):
                    self._stop_duplex(tell_worker=False)
                    self._listening = False

    def _switch_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        if self.mode == "duplex" and self._duplex_turn:
            self._stop_duplex()
        self._abort_live_turn()
        if self._pressed:
            self._pressed, self._held = False, []
        self._detector.reset()
        self._in_speech = False
        self.mode = mode
        # Every mode starts stopped: listening in one mode is no promise to listen in another
        # (a hands-free session turning into live duplex started the agent talking unasked).
        self._listening = False

    def _replay(self, pcm: np.ndarray) -> None:
        if self._agent_busy() or self._duplex_turn or self._pressed:
            log.info("replay ignored: the agent or the user is talking")
            return
        self._replaying = True
        for start in range(0, len(pcm), FRAME):
            chunk = pcm[start:start + FRAME]
            self.audio.write_frame(np.pad(chunk, (0, FRAME - len(chunk))))

    def _press(self) -> None:
        if self.mode != "ptt" or self._pressed:
            return
        # Talking over the agent interrupts it, and what it had not said yet is dropped.
        if self._pending_turn or self.worker.busy or self.audio.playing():
            self.interrupt()
        self._replaying = False
        self._pressed, self._held, self._held_started = True, [], time.time()

    def _release(self) -> None:
        if not self._pressed:
            return
        self._pressed = False
        if self._held:
            self._submit_turn(np.concatenate(self._held), self._held_started)
        self._held = []

    def _set_listening(self, on: bool) -> None:
        if on == self._listening or self.mode == "ptt":
            return
        self._listening = on
        if not on:
            self._abort_live_turn()
        self._detector.reset()
        self._in_speech = False
        if self.mode == "duplex":
            if on:
                self._start_duplex()
            else:
                self._stop_duplex()

    def _start_duplex(self) -> None:
        self._duplex_turn = self._new_turn_id()
        self._duplex_frames, self._duplex_started = [], time.time()
        self.worker.submit(StartDuplex(turn_id=self._duplex_turn))

    def _stop_duplex(self, tell_worker: bool = True) -> None:
        if not self._duplex_turn:
            return
        if tell_worker:
            self.worker.submit(StopDuplex())
        self._agent_voice.reset()
        if self._duplex_frames:
            audio = np.concatenate(self._duplex_frames)
            self.on_event(UserTurn(self._duplex_turn, "duplex", audio, self._duplex_started,
                                   len(audio) / SAMPLE_RATE))
        self._duplex_turn, self._duplex_frames = 0, []

    def _new_turn_id(self) -> int:
        turn_id = self._next_turn
        self._next_turn += 1
        return turn_id

    def _submit_turn(self, audio: np.ndarray, started: float) -> None:
        turn_id = self._new_turn_id()
        self._pending_turn = turn_id
        self.on_event(UserTurn(turn_id, self.mode, audio, started, len(audio) / SAMPLE_RATE))
        self.worker.submit(Respond(audio=audio, max_steps=self.max_steps, early_stop=self.early_stop,
                                   turn_id=turn_id))

    def _begin_live_turn(self) -> None:
        """Speech started (semantic end of turn): the worker hears the turn from now on."""
        audio = self._detector.turn_audio()
        turn_id = self._new_turn_id()
        self._pending_turn = self._live_turn = turn_id
        self._live_frames, self._live_started = [audio], time.time() - len(audio) / SAMPLE_RATE
        self._semantic.reset()
        self.worker.submit(StartTurn(audio=audio, max_steps=self.max_steps, early_stop=self.early_stop,
                                     turn_id=turn_id))

    def _stream_turn(self, frame: np.ndarray) -> None:
        self.worker.push_turn_frame(self._live_turn, frame)
        self._live_frames.append(frame)
        event = self._detector.push(frame)
        if event is not None and event.kind == "turn_ended":  # the silence (or the length) ends it
            long = event.t_end - event.t_speech_start >= self._vad.max_turn_s
            self._end_live_turn("max_length" if long else "silence")

    def _end_live_turn(self, reason: str, tell_worker: bool = True) -> None:
        turn_id = self._live_turn
        if tell_worker:
            self.worker.submit(EndTurn(turn_id, reason))
        audio = np.concatenate(self._live_frames) if self._live_frames else np.zeros(0, np.float32)
        self._live_turn, self._live_frames = 0, []
        self._detector.reset()
        self._semantic.reset()
        self._in_speech = False
        self.on_event(UserTurn(turn_id, self.mode, audio, self._live_started, len(audio) / SAMPLE_RATE, reason))

    def _abort_live_turn(self) -> None:
        """Listening stopped mid-turn (mode switch, stop, mute): the turn is cancelled, not answered."""
        if not self._live_turn:
            return
        self.worker.cancel()
        self._live_turn, self._live_frames = 0, []
        self._semantic.reset()

    def _agent_busy(self) -> bool:
        return bool(self._pending_turn) or self.worker.busy or self.audio.playing()

    def _route(self, frame: np.ndarray) -> None:
        if self._muted:
            frame = np.zeros_like(frame)
        user, active = frame, False
        if self.mode == "ptt":
            if self._pressed:
                self._held.append(frame)
                active = True
            else:
                user = np.zeros_like(frame)  # the recording holds only what the user chose to send
        elif self.mode == "handsfree" and self._listening:
            if self._live_turn:
                self._stream_turn(frame)
                active = True
            elif self._agent_busy():
                if self._in_speech:
                    self._detector.reset()
                    self._in_speech = False
            else:
                self._detect(frame)
            active = self._in_speech
        elif self.mode == "duplex" and self._duplex_turn:
            self.worker.push_frame(frame)
            self._duplex_frames.append(frame)
            self._detect(frame, submit=False)
            self._agent_voice.push(self.audio.stats.output_level_db)
            active = True
        else:
            user = np.zeros_like(frame)
        agent = self._agent_frames.popleft() if self._agent_frames else None
        with self._rec_lock:
            self.recorder.add(user, agent if agent is not None else np.zeros(FRAME, np.float32),
                              active=active or agent is not None)

    def _detect(self, frame: np.ndarray, submit: bool = True) -> None:
        event = self._detector.push(frame)
        if event is None:
            return
        if event.kind == "speech_started":
            self._in_speech = True
            if submit and self.end_of_turn == "semantic":
                self._begin_live_turn()
        elif event.kind == "turn_ended":
            self._in_speech = False
            if submit and event.audio is not None and len(event.audio):
                duration = len(event.audio) / SAMPLE_RATE
                self._submit_turn(np.asarray(event.audio, dtype=np.float32), time.time() - duration)

    def _update_state(self) -> None:
        playing = self.audio.playing()
        if self._replaying and not playing:
            self._replaying = False
        if self.mode == "ptt":
            state = "hearing_you" if self._pressed else "waiting" if self._pending_turn or self.worker.busy \
                else "replaying" if self._replaying else "speaking" if playing else "ready"
        elif self.mode == "handsfree":
            if self._replaying:
                state = "replaying"
            elif not self._listening:
                state = "stopped"
            elif self._live_turn:
                state = "hearing_you"
            elif self._pending_turn or self.worker.busy:
                state = "waiting"
            elif playing:
                state = "speaking"
            else:
                state = "hearing_you" if self._in_speech else "listening"
        else:
            if self._replaying:
                state = "replaying"
            elif not self._duplex_turn:
                state = "stopped"
            elif self._in_speech:
                state = "hearing_you"
            elif self._agent_voice.active:
                state = "speaking"
            else:
                state = "listening"
        current = ListenState(state, self.mode, self._muted)
        if current != self._state:
            self._state = current
            self.on_event(current)
