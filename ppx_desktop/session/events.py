"""Commands into the inference thread and events out of it: plain frozen dataclasses, no Qt.

The app connects the worker's `on_event` callback to a Qt signal (queued to the GUI thread);
tests and the CLI read the same events directly. The vocabulary is in docs of each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.sampling import SamplingConfig
from .context import ContextSettings

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadModel:
    """Loads a model directory (None: the downloaded one), or the tiny demo model."""

    model_dir: Path | str | None = None
    demo: bool = False
    device: str | None = None
    dtype: str | None = None
    quant: str | None = None
    offload_layers: int | None = 0  # temporal layers kept in host memory (None: as the GPU needs)
    context: int | None = None  # frames of conversation in view (None: the model's own)
    transcription: bool = False  # the user's words by the speech-to-text model (if downloaded and it fits)


@dataclass(frozen=True, eq=False)
class UseModel:
    """Adopts a model already built in this process (an `engine.model.LoadedModel`), as LoadModel
    would have loaded it: e.g. the released size with random weights for a GPU acceptance run."""

    model: object


@dataclass(frozen=True)
class StartConversation:
    """A new conversation with this voice (preset name or file) and persona prompt."""

    voice: str
    prompt: str = ""
    sampling: SamplingConfig | None = None
    seed: int | None = None
    context: ContextSettings | None = None  # long conversations (None: refresh, the last minute kept)


@dataclass(frozen=True, eq=False)
class Respond:
    """One turn: the user's audio (24 kHz mono float32), then the agent answers."""

    audio: np.ndarray
    max_steps: int = 75
    early_stop: bool = True
    turn_id: int = 0


@dataclass(frozen=True, eq=False)
class StartTurn:
    """A hands-free turn streamed while the user speaks (semantic end of turn): `audio` is what
    was heard so far (with its pre-roll); the rest comes frame by frame through
    `push_turn_frame(turn_id, frame)` until `EndTurn(turn_id)`, then the agent answers. Every user
    frame gives an `EndOfTurnScore`, so the app can end the turn when the user has finished."""

    audio: np.ndarray
    max_steps: int = 75
    early_stop: bool = True
    turn_id: int = 0


@dataclass(frozen=True)
class EndTurn:
    """The user's part of a streamed turn is over (`reason`: "semantic", "silence", "max_length")."""

    turn_id: int
    reason: str = "silence"


@dataclass(frozen=True)
class StartDuplex:
    """Live duplex: the worker consumes frames given with `push_frame` until StopDuplex/cancel."""

    turn_id: int = 0


@dataclass(frozen=True)
class StopDuplex:
    pass


@dataclass(frozen=True)
class PreviewVoice:
    """A few seconds of the agent greeting in `voice` (with this persona), to hear before choosing;
    the conversation carries on afterwards exactly where it was."""

    voice: str
    prompt: str = ""
    max_steps: int = 60


@dataclass(frozen=True)
class Reset:
    """A fresh conversation with the current voice and prompt (restores the post-prompt state)."""


@dataclass(frozen=True)
class CreateVoice:
    """A custom voice from a 10-30 s recording (`assets/voices.py`), made on the inference thread."""

    name: str
    wav_path: Path | str
    consent: bool


@dataclass(frozen=True)
class SetTranscription:
    """Turns the user's transcript on (loads the speech-to-text model if it fits) or off (frees it);
    the current conversation starts again with the same voice and prompt."""

    on: bool


@dataclass(frozen=True)
class Shutdown:
    pass


# --- events -----------------------------------------------------------------------------------

# "buffering": an answer is being generated but held back until it can play without a gap.
# "hearing": a streamed hands-free turn takes the user's frames as they are spoken (StartTurn).
STATES = ("loading", "warming_up", "ready", "preparing", "hearing", "thinking", "buffering", "speaking", "duplex",
          "previewing", "idle", "stopped", "error")


@dataclass(frozen=True)
class Status:
    state: str  # one of STATES
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    task: str  # "load" | "prompt"
    done: int
    total: int


@dataclass(frozen=True)
class ModelLoaded:
    model_dir: str
    device: str
    dtype: str
    voices: tuple[str, ...]  # every voice StartConversation takes by name: presets on disk, then custom
    demo: bool
    offloaded_layers: int = 0  # temporal layers streamed from host memory: turn-based only
    quant: str = "none"  # the LM's linear layers: "none", "int8" or "int4"
    custom_voices: tuple[str, ...] = ()  # which of `voices` the user made (`voices add`, Add voice…)
    transcription: str = ""  # the speech-to-text model's precision when it runs, "" when not


@dataclass(frozen=True)
class ConversationReady:
    voice: str
    prompt: str
    from_cache: bool
    seconds: float
    notes: tuple[str, ...] = ()  # what was done that the user should know (recording trimmed, cache discarded)


@dataclass(frozen=True)
class TurnStarted:
    turn_id: int
    mode: str  # "turn" | "duplex"


@dataclass(frozen=True)
class UserText:
    """The user's words (speech-to-text): a line growing while they speak (`final` False), then final
    with its times (seconds of the conversation)."""

    turn_id: int
    text: str
    start: float
    end: float
    final: bool


@dataclass(frozen=True)
class EndOfTurnScore:
    """The speech-to-text model's end-of-turn probability after user frame `frame` of a streamed
    turn (NaN without the speech-to-text model)."""

    turn_id: int
    frame: int
    probability: float


@dataclass(frozen=True, eq=False)
class AgentAudio:
    turn_id: int
    pcm: np.ndarray  # [1920] float32


@dataclass(frozen=True, eq=False)
class VoicePreview:
    voice: str
    pcm: np.ndarray  # 24 kHz float32, the whole sample


@dataclass(frozen=True)
class AgentText:
    turn_id: int
    text: str


@dataclass(frozen=True)
class TurnFinished:
    turn_id: int
    mode: str
    end: str  # "max_steps" | "agent_finished" | "cancelled" | "stopped" | "error"
    text: str
    steps: int
    user_audio_s: float
    agent_audio_s: float


@dataclass(frozen=True)
class StepStats:
    step_ms: float
    rtf: float  # time per step / 80 ms; above 1 the model falls behind real time
    lag_frames: int
    dropped_input: int
    underruns: int
    context_used: int
    context_size: int
    refreshes: int = 0  # context refreshes so far in this conversation (session/context.py)
    refresh_ms: float = 0.0  # how long the last one held the conversation up
    wait_s: float = 0.0  # turn-based: how long the last answer took to start playing after the turn began


@dataclass(frozen=True)
class ContextRefreshed:
    """The context was rebuilt as the prompt plus the most recent conversation (session/context.py)."""

    frames_before: int
    frames_after: int
    kept_frames: int
    stall_ms: float
    reason: str  # "before the turn", "quiet moment" or "deadline"


@dataclass(frozen=True)
class VoiceCreated:
    name: str
    path: str
    notes: tuple[str, ...] = ()  # what was done to the recording (cut, resampled), for the status bar


@dataclass(frozen=True)
class TranscriptionChanged:
    precision: str  # "" when off


@dataclass(frozen=True)
class Notice:
    """Something the user should know once that is not an error (e.g. frames run uncaptured)."""

    message: str
    kind: str


@dataclass(frozen=True)
class ErrorEvent:
    message: str
    kind: str  # "oom" | "model" | "input" | "internal"
    command: str
