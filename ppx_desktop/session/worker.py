"""The inference thread: one thread owns the model and does all of its work, frame by frame.

Commands (session/events.py) go in through `submit`; events come out through `on_event`, called
on this thread (the app forwards them to a Qt signal). `cancel()` and `push_frame()` may be
called from any thread. Errors never kill the thread: they become `ErrorEvent`s.

Why one thread: CUDA work from several threads pays context switches and cold-start costs, and
a single owner means the conversation state needs no locks.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
import typing as tp
from pathlib import Path

import numpy as np

from ..engine.config import FRAME_RATE, FRAME_SIZE
from . import events as ev
from .duplex import FrameQueue, TurnFrames
from .preroll import PreRoll, StepTimes

log = logging.getLogger(__name__)

STATS_EVERY = 3  # frames between StepStats events (~4 per second)
# A streamed hands-free turn: the context room kept for the user's part (15 s; a longer turn
# refreshes when it must), and the longest it may run if the app never ends it (80 s).
LIVE_TURN_EXPECTED_FRAMES = 188
LIVE_TURN_MAX_FRAMES = 1000


class _Cancelled:
    """`is_set()` for one command: true once `cancel()` was called after it was submitted."""

    def __init__(self, worker: InferenceWorker, seq: int):
        self.worker, self.seq = worker, seq

    def is_set(self) -> bool:
        return self.seq <= self.worker._cancel_seq


class InferenceWorker:
    """Owns the engine on one thread.

    Args:
        on_event: receives every event, on the worker thread; must return quickly.
        audio_sink: receives every agent frame ([1920] float32) on the worker thread, e.g.
            `AudioIO.write_frame`; settable later as an attribute.
        max_input_lag_frames: duplex input kept waiting at most (3 frames = 240 ms); older
            frames are dropped and counted, so latency stays bounded when the model falls behind.
        state_cache_dir: where post-prompt states are kept on disk (None: memory only).
        underruns: returns the audio output's underrun count, for the live statistics.
    """

    def __init__(self, on_event: tp.Callable[[object], None],
                 audio_sink: tp.Callable[[np.ndarray], None] | None = None, *, max_input_lag_frames: int = 3,
                 state_cache_dir: Path | None = None, underruns: tp.Callable[[], int] | None = None):
        from .statecache import PromptStateCache

        self.on_event = on_event
        self.audio_sink = audio_sink
        self.preview_sink: tp.Callable[[np.ndarray], None] | None = None  # voice previews (not the conversation)
        self.underruns = underruns
        self.input = FrameQueue(max_input_lag_frames)
        self.turn_input = TurnFrames(LIVE_TURN_MAX_FRAMES)  # a streamed hands-free turn's frames
        self.cache = PromptStateCache(state_cache_dir)
        self.model = None
        self.conversation = None
        self.busy = False
        self._pending: collections.deque[tuple[int, object]] = collections.deque()
        self._cond = threading.Condition()
        self._seq = 0
        self._cancel_seq = 0
        self._stopping = False
        self._told_fallback = False  # a capture fallback is shown once
        self._told_no_semantic = False  # so is a semantic end of turn without the speech-to-text model
        self.transcriber = None  # the speech-to-text model in the frame (session/transcription.py)
        self.transcription = ""  # its precision while it runs
        self.model_dir: Path | None = None
        self._last_start: ev.StartConversation | None = None
        self.clock: tp.Callable[[], float] = time.perf_counter  # replaceable: tests run a manual clock
        self.step_times = StepTimes()  # this model's recent frame times, for the answers' pre-roll
        self.thread = threading.Thread(target=self._run, name="ppx-inference", daemon=True)

    # --- any thread -------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def submit(self, command: object) -> None:
        with self._cond:
            self._seq += 1
            self._pending.append((self._seq, command))
            self._cond.notify()

    def cancel(self) -> None:
        """Stops the running turn or duplex within one step, and drops turns still queued."""
        with self._cond:
            self._cancel_seq = self._seq
            self._cond.notify()

    def push_frame(self, frame: np.ndarray) -> None:
        self.input.put(frame)

    def push_turn_frame(self, turn_id: int, frame: np.ndarray) -> None:
        """A microphone frame of the streamed turn `turn_id` (see `events.StartTurn`)."""
        self.turn_input.put(turn_id, frame)

    def request_shutdown(self) -> None:
        """Cancels what runs and asks the thread to end, without waiting (see `shutdown`)."""
        with self._cond:
            self._stopping = True
        self.cancel()
        self.submit(ev.Shutdown())

    def wait(self, timeout: float) -> bool:
        """Waits for the thread to end (after `request_shutdown`); True if it has."""
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def shutdown(self, timeout: float = 2.0) -> bool:
        """Cancels what runs, stops the thread; True if it ended within `timeout` seconds."""
        self.request_shutdown()
        return self.wait(timeout)

    # --- the worker thread ------------------------------------------------------------------
    def _emit(self, event: object) -> None:
        try:
            self.on_event(event)
        except Exception:  # a broken listener must not take the engine down
            log.exception("event listener failed on %r", type(event).__name__)

    def _next(self, timeout: float | None = None) -> tuple[int, object] | None:
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout)
            return self._pending.popleft() if self._pending else None

    def _run(self) -> None:
        import torch

        # Autograd's mode is per thread: without this every step would record a graph.
        torch.set_grad_enabled(False)
        while True:
            item = self._next()
            if item is None:
                continue
            seq, command = item
            if isinstance(command, ev.Shutdown):
                break
            self._handle(seq, command)
        self._drop_conversation()
        self.model = None
        self._emit(ev.Status("stopped"))

    def _handle(self, seq: int, command: object) -> None:
        name = type(command).__name__
        handler = {
            ev.LoadModel: self._load, ev.UseModel: self._use_model, ev.StartConversation: self._start_conversation,
            ev.Respond: self._respond, ev.StartTurn: self._live_turn, ev.EndTurn: lambda seq, cmd: None,
            ev.StartDuplex: self._duplex, ev.StopDuplex: lambda seq, cmd: None, ev.Reset: self._reset,
            ev.CreateVoice: self._create_voice, ev.SetTranscription: self._transcription,
            ev.PreviewVoice: self._preview,
        }.get(type(command))
        if handler is None:
            self._emit(ev.ErrorEvent(f"unknown command {name}", "internal", name))
            return
        self.busy = True
        try:
            handler(seq, command)
        except Exception as exc:
            kind, message = _describe(exc, self.model)
            if kind == "internal":
                log.error("inference thread: %s failed:\n%s", name, traceback.format_exc())
            self._emit(ev.ErrorEvent(message, kind, name))
            self._emit(ev.Status("error", message))
        finally:
            self.busy = False

    # --- commands ---------------------------------------------------------------------------
    def _release_model(self) -> None:
        self._drop_conversation()
        self.transcriber, self.transcription = None, ""
        self.model = None
        _free_cuda_memory()
        self.cache.clear_memory()

    def _load(self, seq: int, cmd: ev.LoadModel) -> None:
        from ..engine.model import load_model

        self._release_model()
        self._emit(ev.Status("loading", "demo model" if cmd.demo else str(cmd.model_dir or "")))
        if cmd.demo:
            model_dir = demo_model_dir(lambda d, t: self._emit(ev.Progress("load", d, t)))
        elif cmd.model_dir is not None:
            model_dir = Path(cmd.model_dir)
        else:
            model_dir = _downloaded_model_dir()
        self._emit(ev.Progress("load", 0, 1))
        from ..engine.model import ModelError
        from .transcription import transcription_reserve

        kw = dict(device=cmd.device, dtype=cmd.dtype, offload_layers=cmd.offload_layers, max_context=cmd.context,
                  **({"quant": cmd.quant} if cmd.quant else {}))
        reserve = transcription_reserve(model_dir) if cmd.transcription else 0
        try:  # the automatic precision leaves room for the speech-to-text model (int4, the least it needs)
            model = load_model(model_dir, reserve=reserve, **kw)
        except ModelError:
            if not reserve:
                raise
            model = load_model(model_dir, **kw)  # PersonaPlex first; the transcript then says it does not fit
        self._emit(ev.Progress("load", 1, 1))
        self._install(model, str(model_dir), cmd.demo, cmd.transcription)

    def _use_model(self, seq: int, cmd: ev.UseModel) -> None:
        self._release_model()
        self._install(cmd.model, str(cmd.model.model_dir), demo=False)

    def _install(self, model, source: str, demo: bool, transcription: bool = False) -> None:
        self._emit(ev.Status("warming_up"))
        _warm_up(model)
        self.model = model
        self.step_times = StepTimes()  # a new model or device has its own pace
        streamer = model.lm.streamer
        from ..assets.voices import usable_voices

        voices = usable_voices(Path(model.model_dir))
        self.model_dir = Path(model.model_dir)
        self._set_transcriber(transcription)
        self._emit(ev.ModelLoaded(source, str(model.device), str(model.dtype).replace("torch.", ""),
                                  tuple(v.id for v in voices), demo,
                                  len(streamer.plan.layers) if streamer is not None else 0, model.quant,
                                  tuple(v.id for v in voices if v.custom), self.transcription))
        self._emit(ev.Status("ready"))

    def _start_conversation(self, seq: int, cmd: ev.StartConversation) -> None:
        from .context import ContextSettings

        if self.model is None:
            raise _UserFacing("model", "no model is loaded yet: load or download one first")
        self._emit(ev.Status("preparing", f"voice {cmd.voice}"))
        t0 = time.perf_counter()
        context = (cmd.context or ContextSettings()).within_input_queue(self.input.capacity)
        conv = next_conversation(self.conversation, self.model, cmd.sampling, cmd.seed, self.cache, context=context,
                                 transcriber=self.transcriber)
        self._last_start = cmd
        conv.on_refresh = lambda r: self._emit(ev.ContextRefreshed(r.frames_before, r.frames_after, r.kept_frames,
                                                                   r.stall_ms, r.reason))
        self.conversation = conv
        cached = conv.start(cmd.voice, cmd.prompt, progress=lambda d, t: self._emit(ev.Progress("prompt", d, t)))
        if conv.capture_fallback and not self._told_fallback:
            self._told_fallback = True
            self._emit(ev.Notice("Frames run without CUDA graphs, a little slower: "
                                 f"{conv.capture_fallback}. Details are in the log file.", "capture"))
        self._emit(ev.ConversationReady(cmd.voice, cmd.prompt, cached, time.perf_counter() - t0, tuple(conv.notes)))
        self._emit_stats(0.0, 0, conv)
        self._emit(ev.Status("idle"))

    def _set_transcriber(self, wanted: bool) -> None:
        """Loads the speech-to-text model beside PersonaPlex in the largest precision the GPU's free
        memory holds, or says once why the transcript stays off (not downloaded, does not fit)."""
        from .transcription import load_transcriber

        self.transcriber, self.transcription = None, ""
        _free_cuda_memory()
        if not wanted:
            return
        self.transcriber, why = load_transcriber(self.model, self.model_dir)
        if self.transcriber is None:
            self._emit(ev.Notice(f"Your words are not written down: {why}", "transcription"))
            return
        self.transcription = self.transcriber.precision

    def _transcription(self, seq: int, cmd: ev.SetTranscription) -> None:
        if self.model is None:
            raise _UserFacing("model", "load a model first")
        self._drop_conversation()  # its frame step holds the old transcriber
        self._set_transcriber(cmd.on)
        self._emit(ev.TranscriptionChanged(self.transcription))
        if self._last_start is not None:
            self._start_conversation(seq, self._last_start)

    def _create_voice(self, seq: int, cmd: ev.CreateVoice) -> None:
        """A custom voice from a recording, on this thread (the model's only user): it runs on a
        state of its own as long as the recording, beside the conversation, which stays as it is."""
        from ..assets.voices import create_custom_voice

        if self.model is None:
            raise _UserFacing("model", "load a model before adding a voice")
        self._emit(ev.Status("preparing", f"voice {cmd.name}"))
        notes: list[str] = []
        path = create_custom_voice(self.model, cmd.name, cmd.wav_path, cmd.consent,
                                   progress=lambda d, t: self._emit(ev.Progress("voice", d, t)), notes=notes)
        self._emit(ev.VoiceCreated(cmd.name, str(path), tuple(notes)))
        self._emit(ev.Status("idle"))

    def _drop_conversation(self) -> None:
        if self.conversation is not None:
            self.conversation.close()
        self.conversation = None

    def _require_conversation(self):
        if self.conversation is None:
            raise _UserFacing("input", "no conversation yet: choose a voice and a prompt first")
        return self.conversation

    def _reset(self, seq: int, cmd: ev.Reset) -> None:
        conv = self._require_conversation()
        conv.reset()
        self._emit_stats(0.0, 0, conv)
        self._emit(ev.Status("idle"))

    def _preview(self, seq: int, cmd: ev.PreviewVoice) -> None:
        conv = self._require_conversation()
        cancelled = _Cancelled(self, seq)
        self._emit(ev.Status("previewing", f"voice {cmd.voice}"))
        saved = conv.suspend()
        if conv.user_transcript is not None:
            conv.user_transcript.on_line = None  # the preview's silence is not the user's words
        try:
            conv.start(cmd.voice, cmd.prompt)
            # Half a second of the user saying nothing: the agent greets, as at a call's start.
            stream = conv.respond_stream(np.zeros(6 * FRAME_SIZE, np.float32), cmd.max_steps, True, cancel=cancelled)
            pcm = [chunk.pcm for chunk in stream]
        finally:
            conv.resume(saved)
        if not cancelled.is_set() and pcm:
            # Played from this thread, like every agent frame: the output has one producer.
            if self.preview_sink is not None:
                for frame in pcm:
                    self.preview_sink(frame)
            self._emit(ev.VoicePreview(cmd.voice, np.concatenate(pcm)))
        self._emit(ev.Status("idle"))

    def _respond(self, seq: int, cmd: ev.Respond) -> None:
        audio = np.asarray(cmd.audio, dtype=np.float32).reshape(-1)
        self._turn(seq, cmd.turn_id, audio, -(-len(audio) // FRAME_SIZE), cmd.max_steps, cmd.early_stop)

    def _live_turn(self, seq: int, cmd: ev.StartTurn) -> None:
        """A hands-free turn heard while the user speaks: the frames so far, then each new one as
        the microphone gives it, each followed by its end-of-turn score, until the app ends the
        user's part (`EndTurn`); then the answer, as for `Respond`."""
        conv = self._require_conversation()
        if conv.transcriber is None and not self._told_no_semantic:
            self._told_no_semantic = True
            self._emit(ev.Notice("Ending a turn when you finish your sentence needs the speech-to-text model "
                                 "(Settings, Transcript): until it runs, turns end after a silence.", "semantic"))
        cancelled = _Cancelled(self, seq)
        first = np.asarray(cmd.audio, dtype=np.float32).reshape(-1)
        heard = [0]
        ended: list[float] = []  # when the user's part was over (this thread's clock)

        def score() -> None:
            self._emit(ev.EndOfTurnScore(cmd.turn_id, heard[0], conv.last_end_of_turn))
            heard[0] += 1

        def ended_now() -> bool:
            with self._cond:
                while self._pending:
                    head = self._pending[0][1]
                    if not isinstance(head, ev.EndTurn):
                        return True  # any other command ends the user's part: nothing waits behind a turn
                    self._pending.popleft()
                    if head.turn_id == cmd.turn_id:
                        return True
            return False

        def user_frames() -> tp.Iterator[np.ndarray]:
            from ..audio.files import frames

            try:
                for frame in frames(first, FRAME_SIZE) if len(first) else ():
                    yield frame
                    score()
                over = False
                while heard[0] < LIVE_TURN_MAX_FRAMES and not cancelled.is_set():
                    over = over or ended_now()
                    frame = self.turn_input.get(cmd.turn_id, timeout=0 if over else 0.05)
                    if frame is None:
                        if over:  # what the microphone gave before the end is heard, then no more
                            return
                        continue
                    yield frame
                    score()
            finally:
                ended.append(self.clock())

        self._turn(seq, cmd.turn_id, user_frames(), None, cmd.max_steps, cmd.early_stop, ended)

    def _turn(self, seq: int, turn_id: int, audio, user_frames: int | None, max_steps: int, early_stop: bool,
              user_ended: list[float] | None = None) -> None:
        """One turn: `audio` (the whole turn, or its frames as they come: `user_frames` None and
        `user_ended` filled when the user's part is over), then the answer, played without gaps."""
        conv = self._require_conversation()
        cancelled = _Cancelled(self, seq)
        live = user_frames is None
        self._emit(ev.TurnStarted(turn_id, "turn"))
        if cancelled.is_set():
            self._finish_turn(turn_id, "turn", "cancelled", "", 0, (user_frames or 0) * FRAME_SIZE, 0)
            return
        self._emit(ev.Status("hearing" if live else "thinking"))
        self._user_text_to(conv, turn_id)
        room = {"expected_user_frames": LIVE_TURN_EXPECTED_FRAMES} if live else {}
        stream = conv.respond_stream(audio, max_steps, early_stop, cancel=cancelled, **room)
        clock = self.clock
        t_start = t_last = clock()
        played: list[str] = []
        waited: list[float] = []
        step_ms = [0.0]
        frames_played = [0]

        def play(pcm, text) -> None:
            if cancelled.is_set():  # Stop pressed while held frames were being handed on
                return
            if not waited:
                waited.append(clock() - t_start)
                self._emit(ev.Status("speaking"))
                self._emit_stats(step_ms[0], 0, conv, wait_s=waited[0])
            self._deliver(turn_id, pcm, text)
            frames_played[0] += 1
            if text:
                played.append(text)

        # On a GPU slower than real time the answer waits until the rest will arrive in time.
        gate = PreRoll(play, max_steps, self.step_times)
        for chunk in stream:
            now = clock()
            if chunk.step == 0 and live:
                # The user's frames ran at the microphone's pace: time from the end of the turn,
                # which is also when the wait for the answer begins.
                t_start = user_ended[0] if user_ended else t_start
                step = now - t_start
                self.step_times.add(step)
                self._emit(ev.Status("thinking"))
            elif chunk.step == 0:  # the user's frames and this one ran since the start: their pace
                step = (now - t_start) / (user_frames + 1)
                self.step_times.add(step, user_frames + 1)
            else:
                step = now - t_last
                self.step_times.add(step)
            t_last, step_ms[0] = now, step * 1e3
            if not gate.push(chunk.pcm, chunk.text) and chunk.step == 0:
                self._emit(ev.Status("buffering", "preparing the answer"))
            if chunk.step and chunk.step % STATS_EVERY == 0:
                self._emit_stats(step_ms[0], 0, conv, wait_s=waited[0] if waited else 0.0)
        r = stream.result
        user_samples = r.user_frames * FRAME_SIZE if live else len(audio)
        if r.end != "cancelled":
            gate.flush()
        if r.end == "cancelled" or cancelled.is_set():
            gate.drop()  # what was not played yet is never played, nor shown
            self._finish_turn(turn_id, "turn", "cancelled", "".join(played).strip(), r.steps, user_samples,
                              frames_played[0] * FRAME_SIZE)
            return
        self._finish_turn(turn_id, "turn", r.end, r.text, r.steps, user_samples, r.steps * FRAME_SIZE)

    def _duplex(self, seq: int, cmd: ev.StartDuplex) -> None:
        conv = self._require_conversation()
        streamer = conv.model.lm.streamer
        if streamer is not None:
            raise _UserFacing("input", "live duplex needs the whole model on the GPU, but "
                                       f"{len(streamer.plan.layers)} layers stream from host memory every frame "
                                       "(too slow for real time): use push-to-talk or hands-free turns")
        cancelled = _Cancelled(self, seq)
        self.input.clear()
        self._user_text_to(conv, cmd.turn_id)
        self._emit(ev.TurnStarted(cmd.turn_id, "duplex"))
        self._emit(ev.Status("duplex"))
        steps, pieces, end = 0, [], "stopped"
        while True:
            if cancelled.is_set():
                end = "cancelled"
                break
            with self._cond:
                if self._pending:  # StopDuplex, or any other command, ends the live session
                    if isinstance(self._pending[0][1], ev.StopDuplex):
                        self._pending.popleft()
                    break
            frame = self.input.get(timeout=0.05)
            if frame is None:
                continue
            t0 = time.perf_counter()
            pcm, text = conv.step(frame)
            self._deliver(cmd.turn_id, pcm, text)
            if text:
                pieces.append(text)
            steps += 1
            if steps % STATS_EVERY == 0:
                self._emit_stats((time.perf_counter() - t0) * 1e3, len(self.input), conv)
        if conv.user_transcript is not None:
            conv.user_transcript.finish()  # the words still pending when the live session stops
        text = "".join(pieces).strip()
        self._finish_turn(cmd.turn_id, "duplex", end, text, steps, steps * FRAME_SIZE, steps * FRAME_SIZE)

    # --- helpers ----------------------------------------------------------------------------
    def _user_text_to(self, conv, turn_id: int) -> None:
        """The user's words of this turn (or live stretch) go out as `UserText` events."""
        if conv.user_transcript is not None:
            conv.user_transcript.on_line = lambda line: self._emit(
                ev.UserText(turn_id, line.text, line.start, line.end, line.final))

    def _deliver(self, turn_id: int, pcm: np.ndarray, text: str | None) -> None:
        if self.audio_sink is not None:
            self.audio_sink(pcm)
        self._emit(ev.AgentAudio(turn_id, pcm))
        if text:
            self._emit(ev.AgentText(turn_id, text))

    def _finish_turn(self, turn_id, mode, end, text, steps, user_samples, agent_samples) -> None:
        rate = FRAME_SIZE * FRAME_RATE
        self._emit(ev.TurnFinished(turn_id, mode, end, text, steps, user_samples / rate, agent_samples / rate))
        self._emit(ev.Status("idle"))

    def _emit_stats(self, step_ms: float, lag: int, conv, wait_s: float = 0.0) -> None:
        last = conv.last_refresh
        self._emit(ev.StepStats(step_ms, step_ms / (1000.0 / FRAME_RATE), lag, self.input.dropped,
                                self.underruns() if self.underruns else 0, conv.context_used, conv.context_size,
                                conv.refresh_count, last.stall_ms if last is not None else 0.0, wait_s))


def next_conversation(old, model, sampling, seed, cache, **options):
    """The conversation for a new voice or persona: the old one reused in place when it can be
    (same model and sampling: its state buffers and captured graphs serve again, so the GPU needs
    nothing more), else a new one, built only after the old one's memory is freed. `options` go
    to a new `Conversation` (capture, graphs, context)."""
    from ..engine.sampling import SamplingConfig
    from .conversation import Conversation

    wanted = sampling or SamplingConfig()
    if (old is not None and old.model is model and old.sampling == wanted
            and old.transcriber is options.get("transcriber")):
        old.reseed(seed)
        if options.get("context") is not None:
            old.set_context_settings(options["context"])
        return old
    if old is not None:
        old.close()
        del old
        _free_cuda_memory()
    return Conversation(model, sampling=wanted, seed=seed, cache=cache, **options)


class _UserFacing(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _memory_hint(model) -> str:
    """What fits the GPU's free memory now, in the Settings' words (the planner's figures)."""
    import torch

    base = "Close other programs using the GPU"
    if not torch.cuda.is_available():
        return base + "."
    from ..engine.config import ModelConfig
    from ..engine.memory import fitting_context
    from ..engine.model import fitting_precisions

    config = model.config if model is not None else ModelConfig()
    free = torch.cuda.mem_get_info()[0] + (0 if model is None else torch.cuda.memory_reserved())
    fits = fitting_precisions(config, free, torch.device("cuda"))
    if fits:
        return f"{base}, or choose {fits[0]} in Settings (Quantisation), which fits in {free / 2**30:.1f} GiB."
    context = fitting_context(config, "int4", free)
    if context is not None:
        return (f"{base}, or choose int4 weights and a context of {context} frames ({context / 750:.1f} min) in "
                "Settings.")
    return f"{base}, or choose Small GPU: layers in host memory in Settings (turn-based only)."


def _describe(exc: Exception, model=None) -> tuple[str, str]:
    """(kind, readable message) for an exception raised by a command."""
    import torch

    if isinstance(exc, _UserFacing):
        return exc.kind, str(exc)
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        _free_cuda_memory()
        return "oom", "the GPU ran out of memory. " + _memory_hint(model)
    from ..engine.model import ModelError

    if isinstance(exc, (ModelError, FileNotFoundError)):
        return "model", str(exc)
    if isinstance(exc, ValueError):  # our loaders' errors (voices, configs, audio) are written for users
        return "input", str(exc)
    return "internal", f"unexpected error: {type(exc).__name__}: {exc} (details in the log file)"


def _free_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _downloaded_model_dir() -> Path:
    try:
        from ..assets.hub import find_model_dir
    except ImportError:  # pragma: no cover - the assets module ships with the app
        find_model_dir = None
    found = find_model_dir() if find_model_dir is not None else None
    if found is None:
        raise _UserFacing("model", "no downloaded model found: download PersonaPlex (ppx-desktop download), "
                                   "pick a model folder, or try the demo model")
    return Path(found)


def demo_model_dir(progress: tp.Callable[[int, int], None] | None = None) -> Path:
    """The tiny random demo model in the user's data folder, made on first use."""
    from ..engine.config import LM_WEIGHTS
    from ..engine.tiny import make_tiny_model
    from ..paths import data_dir

    path = data_dir() / "demo-model"
    if not (path / LM_WEIGHTS).is_file() or not (path / "voices").is_dir():
        if progress is not None:
            progress(0, 1)
        make_tiny_model(path, seed=0)
    return path


def _warm_up(model) -> None:
    """One throwaway frame through every part, so the first real frame is not slow (kernel
    selection, allocator growth, lazy CUDA initialisation)."""
    import torch

    from ..engine.generator import Generator
    from ..engine.sampling import SamplingConfig

    with torch.no_grad():
        enc, dec = model.mimi.init_encoder_state(1), model.mimi.init_decoder_state(1)
        x = torch.zeros(1, 1, FRAME_SIZE, device=model.device)
        codes = model.mimi.encode_step(x, enc)
        gen = Generator(model.lm, SamplingConfig())
        state = gen.init_state(1)
        out = None
        while out is None or out.tokens is None:
            out = gen.step(state, user=codes)
        model.mimi.decode_step(out.tokens[:, 1:1 + model.config.mimi.num_codebooks], dec)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)
