"""One conversation with PersonaPlex: prompt phases once, then turns or live duplex frames.

The same streaming state serves every mode, so a conversation remembers earlier turns and a
user can switch between turn-based and duplex at any time. Each 80 ms frame: Mimi encodes the
user's audio, the generator advances one step, Mimi decodes the agent's audio.

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
from ..engine.generator import Generator, GeneratorOptions
from ..engine.model import LoadedModel
from ..engine.prompts import (
    SILENCE_FRAMES,
    VoicePrompt,
    run_text_phases,
    run_voice_phase,
    text_phase_steps,
    voice_phase_steps,
)
from ..engine.sampling import SamplingConfig
from .statecache import PromptState, PromptStateCache, file_identity, fingerprint

PAD_IDS = (0, 3)  # end-of-padding and padding text tokens: the agent is not saying a word


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
        return (f"{len(self.steps)} steps; median encode {med['encode_ms']:.1f} ms, LM {med['lm_ms']:.1f} ms, "
                f"decode {med['decode_ms']:.1f} ms; real-time factor {self.real_time_factor:.2f}; "
                f"context {self.context_used}/{self.context_size} frames")


@dataclass
class Suspended:
    """A conversation's place, kept by `Conversation.suspend`."""

    state: PromptState
    codec: tp.Any  # the frame step's CodecState snapshot
    start: PromptState | None
    voice_name: str | None
    prompt: str


@dataclass
class TurnResult:
    pcm: np.ndarray  # the agent's answer, 24 kHz float32
    text: str
    text_ids: list[int]
    end: str  # a TurnEnd value
    steps: int  # answer frames generated
    user_frames: int
    diagnostics: Diagnostics | None = None


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
        early_stop: when a turn counts as finished (see EarlyStop).
    """

    def __init__(self, model: LoadedModel, *, sampling: SamplingConfig | None = None, seed: int | None = None,
                 options: GeneratorOptions | None = None, cache: PromptStateCache | None = None,
                 early_stop: EarlyStop | None = None, capture: str = "auto"):
        from ..engine.framestep import FrameStep

        self.model = model
        self.device = model.device
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
        self.gen = Generator(model.lm, sampling or SamplingConfig(), options or GeneratorOptions(), self.rng)
        self.state = self.gen.init_state(1)
        self.frame_step = FrameStep(model, self.gen, capture=capture)
        self.codec = self.frame_step.init_codec_state()
        self.enc, self.dec = self.codec.enc, self.codec.dec  # the eager diagnostic path shares them
        self._warm = False
        self.cache = cache if cache is not None else PromptStateCache(folder=None, max_memory_entries=2)
        self.early_stop = early_stop or EarlyStop()
        self.num_codebooks = model.config.mimi.num_codebooks
        self.voice_name: str | None = None
        self.prompt: str = ""
        self._start_snapshot: PromptState | None = None
        self._prev_text_probs: torch.Tensor | None = None
        self._model_key = self._model_identity(model)

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
        source = None
        if isinstance(voice, str):
            source = self.model.resolve_voice(voice)
            voice = self.model.load_voice(voice)
        text_tokens = self.model.tokenizer.encode_system_prompt(prompt) if prompt.strip() else []
        opts = self.gen.options
        voice_key = fingerprint("voice", self._model_key, self._voice_identity(voice, source), opts.exact_window)
        prompt_key = fingerprint("prompt", voice_key, list(text_tokens), SILENCE_FRAMES)
        total = voice_phase_steps(voice) + text_phase_steps(text_tokens)
        done = [0]

        def tick():
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

        from_cache = True
        snap = self.cache.get(prompt_key, self.device)
        if snap is None:
            from_cache = False
            after_voice = self.cache.get(voice_key, self.device)
            if after_voice is not None:
                after_voice.apply(self.state)
                done[0] = voice_phase_steps(voice)
            else:
                self.state.reset()
                run_voice_phase(self.gen, self.state, prompt_cfg=self.model.config.prompt, mimi=self.model.mimi,
                                voice=voice, progress=tick)
                self.cache.put(voice_key, PromptState.capture(self.state))
            run_text_phases(self.gen, self.state, self.model.config.prompt, text_tokens, progress=tick)
            snap = PromptState.capture(self.state)
            self.cache.put(prompt_key, snap)
        self._start_snapshot = snap
        self.voice_name = voice.name if voice is not None else None
        self.prompt = prompt
        self.reset()
        if progress is not None:
            progress(total, total)
        return from_cache

    def reset(self) -> None:
        """Back to the state right after the prompts: a new conversation, same voice and prompt."""
        if self._start_snapshot is None:
            raise RuntimeError("start() the conversation first (choose a voice and a prompt)")
        self._start_snapshot.apply(self.state)
        self.codec.reset()
        self._prev_text_probs = None
        if not self._warm:
            self.frame_step.warmup(self.state, self.codec)  # compiles/captures; leaves the state as is
            self._warm = True

    @property
    def started(self) -> bool:
        return self._start_snapshot is not None

    def suspend(self) -> Suspended:
        """Everything needed to come back to this point after using the conversation for
        something else (a voice preview): the used part of the state, the codec, the prompts."""
        return Suspended(PromptState.capture(self.state), self.codec.snapshot(), self._start_snapshot,
                         self.voice_name, self.prompt)

    def resume(self, saved: Suspended) -> None:
        saved.state.apply(self.state)
        self.codec.restore(saved.codec)
        self._start_snapshot, self.voice_name, self.prompt = saved.start, saved.voice_name, saved.prompt
        self._prev_text_probs = None

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
        attention window, as in the reference; `reset()` starts over with the same prompts."""
        return self.frames_seen >= self.context_size

    # --- one frame --------------------------------------------------------------------------
    @torch.no_grad()  # grad mode is per thread: callers on other threads may not have turned it off
    def _frame(self, pcm: np.ndarray, timing: list | None = None) -> tuple[np.ndarray, int]:
        """Encode `pcm` [1920], step, decode: the agent's frame [1920] and its text token."""
        if self._start_snapshot is None:
            raise RuntimeError("start() the conversation first (choose a voice and a prompt)")
        if timing is None:
            self._prev_text_probs = None
            result = self.frame_step(self.state, self.codec, pcm)
            return result.pcm, result.text_id
        # Diagnostic frames run the same work eagerly, synchronising to time each part.
        mimi = self.model.mimi
        t0 = time.perf_counter()
        x = torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32)).to(self.device).view(1, 1, FRAME_SIZE)
        codes = mimi.encode_step(x, self.enc)
        t1 = self._sync_time()
        out = self.gen.step(self.state, user=codes, return_logits=True)
        t2 = self._sync_time()
        agent = mimi.decode_step(out.tokens[:, 1:1 + self.num_codebooks], self.dec)
        packed = torch.cat([agent.reshape(-1).float(), out.tokens[0, 0, :1].float()]).cpu().numpy()
        t3 = time.perf_counter()
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
        """Live duplex: one user frame [1920] in, the agent's frame [1920] and word piece out."""
        pcm, text_id = self._frame(frame)
        return pcm, self.piece(text_id)

    # --- turns ------------------------------------------------------------------------------
    def respond_stream(self, user_audio: np.ndarray, max_steps: int = 75, early_stop: bool = True,
                       cancel: threading.Event | None = None, diagnostics: bool = False) -> TurnStream:
        """A turn: the user's audio frame by frame, then the agent's answer for up to `max_steps`
        frames with silence as the user's input, yielded frame by frame."""
        from ..audio.files import frames

        if max_steps < 1:
            raise ValueError("max_steps must be at least 1")
        user_frames = frames(np.asarray(user_audio, dtype=np.float32).reshape(-1), FRAME_SIZE)
        diag = Diagnostics(context_size=self.context_size) if diagnostics else None
        pcm_out: list[np.ndarray] = []
        ids: list[int] = []
        end = [TurnEnd.MAX_STEPS]
        silence = np.zeros(FRAME_SIZE, np.float32)

        def record(phase: str, text_id: int, timing: list) -> None:
            if diag is not None:
                enc, lm, dec, prob = timing[-1]
                diag.steps.append(StepTiming(enc, lm, dec, phase, text_id, self.piece(text_id), prob))

        def chunks() -> tp.Iterator[Chunk]:
            timing = [] if diagnostics else None
            for frame in user_frames:
                if cancel is not None and cancel.is_set():
                    end[0] = TurnEnd.CANCELLED
                    return
                _, text_id = self._frame(frame, timing)
                record("user", text_id, timing)
            started, quiet_run = False, 0
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
            pcm = np.concatenate(pcm_out) if pcm_out else np.zeros(0, np.float32)
            text = "".join(p for p in (self.piece(i) for i in ids) if p)
            return TurnResult(pcm, text.strip(), ids, end[0], len(ids), len(user_frames), diag)

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
