"""One conversation with PersonaPlex: prompt phases once, then turns or live duplex frames.

The same streaming state serves every mode, so a conversation remembers earlier turns and a
user can switch between turn-based and duplex at any time. Each 80 ms frame: Mimi encodes the
user's audio, the generator advances one step, Mimi decodes the agent's audio. The prompt phases
run batched (engine/prefill.py); before the context window would drop the prompt, the state is
rebuilt as the prompt plus the recent conversation (session/context.py).

Not thread-safe: a conversation belongs to one thread (the app's inference thread).
"""

from __future__ import annotations

import math
import threading
import time
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..engine.config import FRAME_RATE, FRAME_SIZE, LM_WEIGHTS, MIMI_WEIGHTS
from ..engine.generator import TEXT_PAD, Generator, GeneratorOptions
from ..engine.model import LoadedModel
from ..engine.prefill import Prefiller
from ..engine.prompts import SILENCE_FRAMES, VoicePrompt, check_prompts_fit, text_phase_steps, voice_phase_steps
from ..engine.sampling import SamplingConfig
from .context import PAD_IDS, ContextKeeper, ContextSettings, Refresh
from .statecache import PromptState, PromptStateCache, file_identity, fingerprint
from .user_transcript import UserLine, UserTranscript


class TurnEnd:
    MAX_STEPS = "max_steps"
    FINISHED = "agent_finished"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class EarlyStop:
    """When a turn counts as finished: the model has no end-of-speech token.

    After the agent has started (a word, or audio above `quiet_db`), `silent_frames` frames in a
    row of padding text and quiet audio end the turn (15 frames = 1.2 s, what peers use). An agent
    that never starts within `no_answer_frames` also ends the turn.
    """

    silent_frames: int = 15
    quiet_db: float = -40.0
    no_answer_frames: int = 50


@dataclass
class Chunk:
    """One frame of the agent's answer as it is generated."""

    pcm: np.ndarray  # [1920] float32
    text: str | None  # the word piece, None for padding
    text_id: int
    step: int  # index in the answer phase


@dataclass
class StepTiming:
    encode_ms: float
    lm_ms: float
    decode_ms: float
    phase: str  # "user" | "answer"
    text_id: int
    text: str | None
    text_prob: float  # probability of this text token under the model (no temperature); NaN if unknown


@dataclass
class Diagnostics:
    steps: list[StepTiming] = field(default_factory=list)
    context_used: int = 0
    context_size: int = 0
    refreshes: list[Refresh] = field(default_factory=list)  # context refreshes during the turn

    @property
    def step_ms(self) -> float:
        return float(np.median([s.encode_ms + s.lm_ms + s.decode_ms for s in self.steps])) if self.steps else 0.0

    @property
    def real_time_factor(self) -> float:
        """Median frame time over the 80 ms a frame lasts: below 1 keeps up with real time."""
        return self.step_ms / (1000.0 / FRAME_RATE)

    def summary(self) -> str:
        if not self.steps:
            return "no steps"
        med = {k: float(np.median([getattr(s, k) for s in self.steps])) for k in ("encode_ms", "lm_ms", "decode_ms")}
        text = (f"{len(self.steps)} steps; median encode {med['encode_ms']:.1f} ms, LM {med['lm_ms']:.1f} ms, "
                f"decode {med['decode_ms']:.1f} ms; real-time factor {self.real_time_factor:.2f}; "
                f"context {self.context_used}/{self.context_size} frames")
        for r in self.refreshes:
            text += (f"; context refreshed ({r.reason}): {r.frames_before} -> {r.frames_after} frames, "
                     f"kept {r.kept_frames} of the conversation, {r.stall_ms:.0f} ms")
        return text


@dataclass
class Suspended:
    """A conversation's place, kept by `Conversation.suspend`."""

    state: PromptState
    codec: tp.Any  # the frame step's CodecState snapshot
    start: PromptState | None
    voice_name: str | None
    prompt: str
    clock: int = 0
    keeper: tp.Any = None  # the context keeper (history, refresh count) as it was
    transcriber: tp.Any = None  # the speech-to-text state and the user's pending words


@dataclass
class TurnResult:
    pcm: np.ndarray  # the agent's answer, 24 kHz float32
    text: str
    text_ids: list[int]
    end: str  # a TurnEnd value
    steps: int  # answer frames generated
    user_frames: int
    diagnostics: Diagnostics | None = None
    user_line: UserLine | None = None  # the user's words, with a transcriber
    start_s: float = 0.0  # the turn's first user frame, seconds of the conversation
    answer_start_s: float = 0.0  # the answer's first frame


class TurnStream:
    """Iterates the answer's `Chunk`s as they are generated; `.result` is set once exhausted."""

    def __init__(self, chunks: tp.Iterator[Chunk], finish: tp.Callable[[], TurnResult]):
        self._chunks, self._finish = chunks, finish
        self.result: TurnResult | None = None

    def __iter__(self) -> TurnStream:
        return self

    def __next__(self) -> Chunk:
        try:
            return next(self._chunks)
        except StopIteration:
            if self.result is None:
                self.result = self._finish()
            raise


class Conversation:
    """A conversation on a loaded model.

    Args:
        model: the loaded model (its weights are shared, never modified).
        sampling: sampling settings (None: the reference's defaults).
        seed: makes sampled answers reproducible (None: a random seed).
        cache: post-prompt states (None: kept in memory only for this conversation).
        capture: how frames run (engine/framestep.py): "auto" replays one CUDA graph per frame on
            a GPU and runs eagerly on the CPU; "off" always eager. Diagnostic turns run eagerly to
            time encode, LM and decode apart.
        graphs: the graph backend for captured frames (engine/graphs.py; tests, memory traces).
        early_stop: when a turn counts as finished (see EarlyStop).
        context: what happens when the context would drop the prompt (session/context.py).

    `start()` may be called again for another voice or persona: the state, its buffers and the
    captured graphs are reused in place, so a new conversation needs no memory beyond the first.
    """

    def __init__(self, model: LoadedModel, *, sampling: SamplingConfig | None = None, seed: int | None = None,
                 options: GeneratorOptions | None = None, cache: PromptStateCache | None = None,
                 early_stop: EarlyStop | None = None, capture: str = "auto", context: ContextSettings | None = None,
                 graphs=None, transcriber=None):
        from ..engine.framestep import FrameStep

        self.model = model
        self.device = model.device
        self.rng = torch.Generator(device=self.device) if self.device.type != "meta" else None
        self.reseed(seed)
        self.gen = Generator(model.lm, sampling or SamplingConfig(), options or GeneratorOptions(), self.rng)
        self.state = self.gen.init_state(1)
        self.prefiller = Prefiller(self.gen)
        window = model.config.lm.context - (0 if self.gen.options.exact_window else 1)
        self.keeper = ContextKeeper(context or ContextSettings(), window, model.config.lm.num_streams)
        self.on_refresh: tp.Callable[[Refresh], None] | None = None  # called after each context refresh
        self._calibrated = False
        self.frame_step = FrameStep(model, self.gen, capture=capture, graphs=graphs, transcriber=transcriber)
        self.transcriber = transcriber
        # The user's words, when a speech-to-text model rides in the frame (session/user_transcript.py).
        self.user_transcript = UserTranscript(transcriber) if transcriber is not None else None
        self.codec = self.frame_step.init_codec_state()
        self.enc, self.dec = self.codec.enc, self.codec.dec  # the eager diagnostic path shares them
        self.cache = cache if cache is not None else PromptStateCache(folder=None, max_memory_entries=2)
        self.early_stop = early_stop or EarlyStop()
        self.num_codebooks = model.config.mimi.num_codebooks
        self.voice_name: str | None = None
        self.prompt: str = ""
        self.notes: list[str] = []  # what the last start() did that the user should hear of
        self._start_snapshot: PromptState | None = None
        self._prev_text_probs: torch.Tensor | None = None
        self._model_key = self._model_identity(model)
        self.clock = 0
        # The speech-to-text model's end-of-turn probability for the last frame (NaN without it).
        self.last_end_of_turn = math.nan

    def reseed(self, seed: int | None) -> None:
        """Makes sampled answers from now on reproducible (None: a random seed)."""
        if self.rng is not None:
            self.rng.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))

    @property
    def sampling(self) -> SamplingConfig:
        return self.gen.sampling

    @property
    def capture_fallback(self) -> str | None:
        """Why frames run eagerly although they were to be captured (None: they are not)."""
        return self.frame_step.fallback_reason

    def set_context_settings(self, settings: ContextSettings) -> None:
        """Another long-conversation policy for the next `start()` (the replay speed is measured again)."""
        if settings != self.keeper.settings:
            self.keeper = ContextKeeper(settings, self.keeper.window, self.model.config.lm.num_streams)
            self._calibrated = False

    def close(self) -> None:
        """Frees the captured graphs now (the state goes with the object)."""
        self.frame_step.release_graphs()

    # --- prompts ----------------------------------------------------------------------------
    @staticmethod
    def _model_identity(model: LoadedModel) -> tuple:
        files = []
        for name in (LM_WEIGHTS, MIMI_WEIGHTS):
            path = Path(model.model_dir) / name
            files.append(file_identity(path) if path.is_file() else str(path))
        return (*files, str(model.dtype), model.device.type, repr(model.config))

    def _voice_identity(self, voice: VoicePrompt | None, source: Path | None) -> str:
        if voice is None:
            return "no-voice"
        if source is not None and source.is_file():
            return fingerprint(source.read_bytes())
        data = voice.frames if voice.frames is not None else voice.embeddings.float().numpy()
        return fingerprint(np.ascontiguousarray(data).tobytes())

    @torch.no_grad()
    def start(self, voice: str | VoicePrompt | None, prompt: str = "",
              progress: tp.Callable[[int, int], None] | None = None) -> bool:
        """Sets the voice (a preset name, a file, or a VoicePrompt) and persona prompt, and runs
        the prompt phases, or restores their result from the cache. Returns True when cached."""
        from ..assets.voices import open_voice

        source = None
        if isinstance(voice, str):  # presets and the user's custom voices by name, or a file
            voice, source = open_voice(self.model, voice)
        text_tokens = self.model.tokenizer.encode_system_prompt(prompt) if prompt.strip() else []
        check_prompts_fit(voice, text_tokens, self.context_size)
        notes = list(voice.notes) if voice is not None else []
        opts = self.gen.options
        voice_key = fingerprint("voice", self._model_key, self._voice_identity(voice, source), opts.exact_window)
        prompt_key = fingerprint("prompt", voice_key, list(text_tokens), SILENCE_FRAMES)
        total = voice_phase_steps(voice) + text_phase_steps(text_tokens)

        def tick(done: int) -> None:
            if progress is not None:
                progress(min(done, total), total)

        from_cache = True
        snap = self.cache.get(prompt_key, self.device, like=self.state)
        if snap is None:
            from_cache = False
            try:
                snap = self._run_prompts(voice, voice_key, text_tokens, tick)
            except BaseException:
                if self._start_snapshot is not None:  # the previous conversation stays usable
                    self.reset()
                raise
            self.cache.put(prompt_key, snap)
        self._start_snapshot = snap
        self.notes = notes + self.cache.take_notes()
        self.voice_name = voice.name if voice is not None else None
        self.prompt = prompt
        self.reset()
        # Compiles or captures (leaving the state as is); after an earlier conversation on the
        # same buffers only what this prompt's length needs and that one's did not.
        self.frame_step.warmup(self.state, self.codec)
        if progress is not None:
            progress(total, total)
        return from_cache

    def _run_prompts(self, voice: VoicePrompt | None, voice_key: str, text_tokens: list[int], tick) -> PromptState:
        after_voice = self.cache.get(voice_key, self.device, like=self.state)
        if after_voice is not None:
            after_voice.apply(self.state)
        else:
            self.state.reset()
            self.prefiller.voice(self.state, self.model.config.prompt, mimi=self.model.mimi, voice=voice,
                                 progress=tick)  # WAV voices: per Mimi-encoded frame
            self.cache.put(voice_key, PromptState.capture(self.state))
            tick(voice_phase_steps(voice))
        self.prefiller.text(self.state, self.model.config.prompt, text_tokens)
        return PromptState.capture(self.state)

    def reset(self) -> None:
        """Back to the state right after the prompts: a new conversation, same voice and prompt."""
        if self._start_snapshot is None:
            raise RuntimeError("start() the conversation first (choose a voice and a prompt)")
        self._start_snapshot.apply(self.state)
        self.codec.reset()
        self._prev_text_probs = None
        self.clock = 0  # frames since the prompts, for the user's word times (refreshes do not rewind it)
        if self.transcriber is not None:
            self.transcriber.reset()
            self.user_transcript.restart()
        self.keeper.start(self._start_snapshot.offset)
        if not self._calibrated:
            self._calibrate()

    @property
    def started(self) -> bool:
        return self._start_snapshot is not None

    def _calibrate(self) -> None:
        """Times a trial replay on the post-prompt state, for the live duplex stall budget, then
        restores the state. Once per conversation, and only where refreshes can happen."""
        self._calibrated = True
        frames = min(self.keeper.settings.calibration_frames, self.keeper.room)
        if not self.keeper.active or frames < 1:
            return
        prompt = self.model.config.prompt
        trial = torch.cat([torch.tensor([[TEXT_PAD]]), torch.tensor([prompt.silence_tokens]),
                           torch.tensor([prompt.sine_tokens])], dim=1).view(1, -1, 1).expand(1, -1, frames)
        trial = trial.to(self.device).contiguous()
        t0 = time.perf_counter()
        self._start_snapshot.apply(self.state)  # as a refresh does
        self.prefiller.frames(self.state, trial)
        self.keeper.measured((self._sync_time() - t0) * 1e3, frames)
        self._start_snapshot.apply(self.state)
    def suspend(self) -> Suspended:
        """Everything needed to come back to this point after using the conversation for
        something else (a voice preview): the used part of the state, the codec, the prompts."""
        import copy

        stt = None
        if self.transcriber is not None:
            pending = copy.copy(self.user_transcript.__dict__)
            pending["lines"] = list(pending["lines"])
            pending["_tokens"] = list(pending["_tokens"])
            stt = (self.transcriber.state.snapshot(), pending)
        return Suspended(PromptState.capture(self.state), self.codec.snapshot(), self._start_snapshot,
                         self.voice_name, self.prompt, self.clock, copy.deepcopy(self.keeper), stt)

    def resume(self, saved: Suspended) -> None:
        saved.state.apply(self.state)
        self.codec.restore(saved.codec)
        self._start_snapshot, self.voice_name, self.prompt = saved.start, saved.voice_name, saved.prompt
        self._prev_text_probs = None
        self.clock = saved.clock
        if saved.keeper is not None:
            self.keeper = saved.keeper
        if saved.transcriber is not None and self.transcriber is not None:
            state, pending = saved.transcriber
            self.transcriber.state.restore(state)
            self.user_transcript.__dict__.update(pending)

    # --- context ----------------------------------------------------------------------------
    @property
    def context_size(self) -> int:
        return self.model.config.lm.context

    @property
    def frames_seen(self) -> int:
        """Model steps since the start of the prompts (host counter: no device sync)."""
        return max(self.state.offset - 1, 0)

    @property
    def context_used(self) -> int:
        return min(self.frames_seen, self.context_size)

    @property
    def context_full(self) -> bool:
        """Past this point the oldest frames (the voice and persona prompt first) leave the
        attention window, as in the reference (context refresh off, or a prompt too long for
        it); `reset()` starts over with the same prompts."""
        return self.frames_seen >= self.context_size

    @property
    def refresh_count(self) -> int:
        """Context refreshes so far (session/context.py)."""
        return self.keeper.count

    @property
    def last_refresh(self) -> Refresh | None:
        return self.keeper.recent[-1] if self.keeper.recent else None

    def _refresh(self, kept: int, reason: str) -> Refresh:
        """Rebuilds the context as the prompt followed by the last `kept` conversation frames."""
        t0 = time.perf_counter()
        before = self.frames_seen
        frames = torch.from_numpy(self.keeper.history.last(kept).T.copy()).to(self.device).unsqueeze(0)  # [1, 17, h]
        self.prefiller.refresh(self.state, self._start_snapshot, frames)
        record = Refresh(before, kept, self.frames_seen, (self._sync_time() - t0) * 1e3, reason)
        self.keeper.refreshed(record)
        if self.on_refresh is not None:
            self.on_refresh(record)
        return record

    # --- one frame --------------------------------------------------------------------------
    @torch.no_grad()  # grad mode is per thread: callers on other threads may not have turned it off
    def _frame(self, pcm: np.ndarray, timing: list | None = None, live: bool = False) -> tuple[np.ndarray, int]:
        """Encode `pcm` [1920], step, decode: the agent's frame [1920] and its text token."""
        if self._start_snapshot is None:
            raise RuntimeError("start() the conversation first (choose a voice and a prompt)")
        plan = self.keeper.before_frame(self.frames_seen, live)
        if plan is not None:
            self._refresh(*plan)
        frame_index = self.state.offset - 1  # the step returns the frame of this real time
        clock, self.clock = self.clock, self.clock + 1
        if timing is None:
            self._prev_text_probs = None
            result = self.frame_step(self.state, self.codec, pcm)
            self.keeper.record(frame_index, result.tokens)
            if self.user_transcript is not None:
                self.user_transcript.add(clock, result.user_text_id, result.end_of_turn, live)
                self.last_end_of_turn = math.nan if result.end_of_turn is None else result.end_of_turn
            return result.pcm, result.text_id
        # Diagnostic frames run the same work eagerly, synchronising to time each part.
        mimi = self.model.mimi
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32)).to(self.device).view(1, 1, FRAME_SIZE)
        codes = mimi.encode_step(x, self.enc, num_codebooks=self.frame_step._codebooks)
        if self.transcriber is not None:  # the same shared encode as the captured frame
            user_text, end_of_turn = self.transcriber.step(codes)
            self.user_transcript.add(clock, int(user_text[0]), float(end_of_turn[0]), live)
            self.last_end_of_turn = float(end_of_turn[0])
        codes = codes[:, :self.num_codebooks]
        t1 = self._sync_time()
        out = self.gen.step(self.state, user=codes, return_logits=True)
        t2 = self._sync_time()
        agent = mimi.decode_step(out.tokens[:, 1:1 + self.num_codebooks], self.dec)
        packed = torch.cat([agent.reshape(-1).float(), out.tokens[0, :, 0].float()]).cpu().numpy()
        t3 = time.perf_counter()
        self.keeper.record(frame_index, packed[FRAME_SIZE:].astype(np.int64))
        packed = packed[:FRAME_SIZE + 1]
        text_id = int(packed[-1])
        # This call's text logits score the token the *next* call returns (text has no delay, the
        # audio streams one frame): keep them for it.
        prob = float(self._prev_text_probs[text_id]) if self._prev_text_probs is not None else math.nan
        self._prev_text_probs = torch.softmax(out.text_logits[0].float(), dim=-1).cpu()
        timing.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, prob))
        return packed[:-1], text_id

    def _sync_time(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def piece(self, text_id: int) -> str | None:
        if text_id in PAD_IDS:
            return None
        return self.model.tokenizer.piece_text(text_id)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, str | None]:
        """Live duplex: one user frame [1920] in, the agent's frame [1920] and word piece out.

        Near the end of the context window the conversation refreshes it at a quiet moment
        (session/context.py); that step then takes longer (`last_refresh.stall_ms`)."""
        pcm, text_id = self._frame(frame, live=True)
        self.keeper.observe(frame, pcm, text_id)
        return pcm, self.piece(text_id)

    def step_ids(self, frame: np.ndarray) -> tuple[np.ndarray, int]:
        """`step` with the text token id instead of its word piece (no tokenizer needed)."""
        return self._frame(frame)

    # --- turns ------------------------------------------------------------------------------
    def respond_stream(self, user_audio: np.ndarray | tp.Iterable[np.ndarray], max_steps: int = 75,
                       early_stop: bool = True, cancel: threading.Event | None = None, diagnostics: bool = False,
                       expected_user_frames: int | None = None) -> TurnStream:
        """A turn: the user's audio frame by frame, then the agent's answer for up to `max_steps`
        frames with silence as the user's input, yielded frame by frame.

        `user_audio` is the whole turn, or an iterable of [1920] frames consumed as they come (a
        turn streamed while the user speaks; `expected_user_frames` then sizes the context room
        kept for it, and a longer turn refreshes the context when it must)."""
        from ..audio.files import frames

        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        if isinstance(user_audio, np.ndarray):
            user_frames: tp.Iterable[np.ndarray] = frames(user_audio.astype(np.float32).reshape(-1), FRAME_SIZE)
            expected = len(user_frames)
        else:
            user_frames, expected = user_audio, expected_user_frames or 0
        heard = [0]
        diag = Diagnostics(context_size=self.context_size) if diagnostics else None
        refreshes_before = self.keeper.count
        pcm_out: list[np.ndarray] = []
        ids: list[int] = []
        end = [TurnEnd.MAX_STEPS]
        times = [self.clock / FRAME_RATE, self.clock / FRAME_RATE]  # the turn's and the answer's start
        silence = np.zeros(FRAME_SIZE, np.float32)

        def record(phase: str, text_id: int, timing: list) -> None:
            if diag is not None:
                enc, lm, dec, prob = timing[-1]
                diag.steps.append(StepTiming(enc, lm, dec, phase, text_id, self.piece(text_id), prob))

        def chunks() -> tp.Iterator[Chunk]:
            timing = [] if diagnostics else None
            kept = self.keeper.before_turn(self.frames_seen, expected + max_steps)
            if kept is not None:
                self._refresh(kept, "before the turn")
            times[0] = self.clock / FRAME_RATE
            for frame in user_frames:
                if cancel is not None and cancel.is_set():
                    end[0] = TurnEnd.CANCELLED
                    return
                _, text_id = self._frame(frame, timing)
                heard[0] += 1
                record("user", text_id, timing)
            started, quiet_run = False, 0
            times[1] = self.clock / FRAME_RATE
            for n in range(max_steps):
                if cancel is not None and cancel.is_set():
                    end[0] = TurnEnd.CANCELLED
                    return
                pcm, text_id = self._frame(silence, timing)
                record("answer", text_id, timing)
                pcm_out.append(pcm)
                ids.append(text_id)
                yield Chunk(pcm, self.piece(text_id), text_id, n)
                if early_stop:
                    quiet = text_id in PAD_IDS and _level_db(pcm) < self.early_stop.quiet_db
                    started = started or not quiet
                    quiet_run = 0 if not quiet else quiet_run + 1
                    rule = self.early_stop
                    finished = started and quiet_run >= rule.silent_frames
                    if finished or (not started and n + 1 >= rule.no_answer_frames):
                        end[0] = TurnEnd.FINISHED
                        return

        def finish() -> TurnResult:
            if diag is not None:
                diag.context_used = self.context_used
                new = self.keeper.count - refreshes_before
                diag.refreshes = list(self.keeper.recent)[-new:] if new else []
            pcm = np.concatenate(pcm_out) if pcm_out else np.zeros(0, np.float32)
            text = "".join(p for p in (self.piece(i) for i in ids) if p)
            # The answer's silent input let the speech-to-text model's last words out (its delay).
            line = self.user_transcript.finish(times[0]) if self.user_transcript is not None else None
            return TurnResult(pcm, text.strip(), ids, end[0], len(ids), heard[0], diag, line, *times)

        return TurnStream(chunks(), finish)

    def respond(self, user_audio: np.ndarray, max_steps: int = 75, early_stop: bool = True,
                cancel: threading.Event | None = None) -> TurnResult:
        stream = self.respond_stream(user_audio, max_steps, early_stop, cancel)
        for _ in stream:
            pass
        return stream.result

    def respond_diagnostic(self, user_audio: np.ndarray, max_steps: int = 75, early_stop: bool = True,
                           cancel: threading.Event | None = None) -> TurnResult:
        """`respond` plus per-step encode/LM/decode times, the real-time factor, the text tokens
        with their probabilities and the context used. Greedy answers equal `respond`'s; sampled
        ones draw different random numbers (every sub-step runs to expose the logits)."""
        stream = self.respond_stream(user_audio, max_steps, early_stop, cancel, diagnostics=True)
        for _ in stream:
            pass
        return stream.result


def _level_db(pcm: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0
    return 20.0 * math.log10(max(rms, 1e-10))
