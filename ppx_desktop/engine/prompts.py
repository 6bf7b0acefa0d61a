"""PersonaPlex prompt phases: voice prompt, silence, text (persona) prompt, silence.

Every stream is forced during the prompts, so they only build the temporal transformer's cache.
The voice prompt comes from a WAV (encoded by Mimi frame by frame) or from a `.pt` file holding
the temporal inputs of that phase (replayed) plus the token cache after it.

These are the step-by-step phases, one generator step per frame as in the reference: the
reference for tests. The app runs the same phases batched (engine/prefill.py).
"""

from __future__ import annotations

import os
import pickle
import secrets
import typing as tp
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import FRAME_RATE, FRAME_SIZE, PromptConfig
from .generator import TEXT_PAD, Generator, GenState

SILENCE_FRAMES = 6  # int(0.5 s * 12.5 Hz), after the voice prompt and after the text prompt
# A voice prompt from audio uses at most this much of the recording (custom voices are made from
# 10-30 s): a longer one would fill the context with the voice and slow every start.
VOICE_AUDIO_SECONDS = 30.0
VOICE_CONTEXT_SHARE = 0.6


class VoiceError(ValueError):
    """A voice prompt cannot be used; the message says why and what to do."""


@dataclass
class VoicePrompt:
    """A voice prompt: either audio frames to encode, or a replay of precomputed embeddings."""

    name: str
    frames: np.ndarray | None = None  # [N, 1920], loudness-normalised 24 kHz audio
    embeddings: torch.Tensor | None = None  # [N - 1, 1, 1, dim], temporal inputs of the voice phase
    cache: torch.Tensor | None = None  # [1, 17, 4] token cache after the voice phase
    notes: tuple[str, ...] = ()  # what was done to the recording (trimmed, resampled), for the user

    @property
    def num_frames(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.embeddings) + 1


def max_voice_seconds(config) -> float:
    """The longest voice recording used for a model (a `ModelConfig`): 30 s, and never more than
    60 % of its context, so the persona prompt and the conversation keep room (a tiny model's
    context is 20 s)."""
    return min(VOICE_AUDIO_SECONDS, VOICE_CONTEXT_SHARE * config.lm.context / FRAME_RATE)


def load_voice_audio(path: str | Path, max_seconds: float = VOICE_AUDIO_SECONDS) -> VoicePrompt:
    """A voice prompt from an audio file: 24 kHz mono, normalised to -24 LUFS (ITU-R BS.1770).

    At most the first `max_seconds` are used; `notes` say what was done to the recording."""
    from ..audio.files import AudioFileError, frames, normalize_loudness, read_audio

    notes: list[str] = []
    try:
        audio = normalize_loudness(read_audio(path, max_seconds=None, keep_seconds=max_seconds, notes=notes))
    except AudioFileError as exc:
        raise VoiceError(f"voice prompt {path}: {exc}") from exc
    return VoicePrompt(name=Path(path).stem, frames=frames(audio, FRAME_SIZE),
                       notes=tuple(f"voice prompt {Path(path).name}: {n}" for n in notes))


def _starts_with_pickle(path: Path) -> bool:
    """Whether the file (or the `data.pkl` of a `torch.save` zip) is a well-formed pickle: then a
    refusal by the weights-only loader was about what it holds, not about damage."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if name is None:
                    return False
                data = z.read(name)
        else:
            data = path.read_bytes()
        for _ in pickletools.genops(data):
            pass
    except Exception:  # any parse failure: not a pickle (random bytes, a damaged file)
        return False
    return True


def load_voice_file(path: str | Path, dim: int | None = None, num_streams: int = 17, *,
                    card: int | None = None, text_card: int | None = None,
                    columns: int | None = None) -> VoicePrompt:
    """A voice prompt from a `.pt` file ({"embeddings": [N-1, 1, 1, dim], "cache": [1, 17, 4]}).

    Loaded with `weights_only=True`: a file that carries arbitrary pickled objects (which could
    run code) is refused. Tensors are mapped to the CPU, so files saved from a GPU load anywhere.
    With the model's `card` / `text_card` / cache `columns` given, every token id in the cache is
    checked against them (an id beyond a card fails deep inside an embedding otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise VoiceError(f"voice file not found: {path}")
    damaged = (f"{path} is not a readable voice file: it is damaged or not a voice. Recreate it with "
               "`ppx-desktop voices add`, or download the model's voices again")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: the error below says it all
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _starts_with_pickle(path):
            raise VoiceError(damaged) from exc
        raise VoiceError(
            f"{path} was refused: it contains Python objects other than tensors, which could run code "
            "when loaded. Only use voice files from a source you trust, or recreate it with "
            "`ppx-desktop voices add`."
        ) from exc
    except Exception as exc:  # torch.load raises nearly anything on garbage (KeyError, UnicodeDecodeError, ...)
        raise VoiceError(f"{damaged} ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not isinstance(data, dict) or not {"embeddings", "cache"} <= set(data):
        raise VoiceError(f"{path} is not a voice file: expected the keys 'embeddings' and 'cache'")
    emb, cache = data["embeddings"], data["cache"]
    if not (isinstance(emb, torch.Tensor) and emb.dim() == 4 and emb.shape[1:3] == (1, 1) and len(emb) >= 1
            and emb.is_floating_point()):
        raise VoiceError(f"{path}: 'embeddings' must be a float tensor [N, 1, 1, dim]")
    if dim is not None and emb.shape[-1] != dim:
        raise VoiceError(f"{path} was made for a model of width {emb.shape[-1]}, this model has {dim}")
    if not (isinstance(cache, torch.Tensor) and cache.dtype == torch.long and cache.dim() == 3
            and cache.shape[:2] == (1, num_streams)):
        raise VoiceError(f"{path}: 'cache' must be an int64 tensor [1, {num_streams}, columns]")
    if columns is not None and cache.shape[2] != columns:
        raise VoiceError(f"{path}: 'cache' has {cache.shape[2]} columns, this model's generator keeps {columns}; "
                         "the file was made for another model: recreate it with `ppx-desktop voices add`")
    _check_token_ids(path, cache, card, text_card)
    if not torch.isfinite(emb).all():
        raise VoiceError(f"{path}: 'embeddings' contain NaN or infinite values")
    return VoicePrompt(name=path.stem, embeddings=emb, cache=cache)


def _check_token_ids(path: Path, cache: torch.Tensor, card: int | None, text_card: int | None) -> None:
    """Ids run from -2 (not generated yet) through the card (the initial token) for each stream."""
    from .lm import UNGENERATED_TOKEN

    for streams, limit, what in ((slice(0, 1), text_card, "text"), (slice(1, None), card, "audio")):
        if limit is None or cache[:, streams].numel() == 0:
            continue
        part = cache[:, streams]
        low, high = int(part.min()), int(part.max())
        if low < UNGENERATED_TOKEN or high > limit:
            raise VoiceError(f"{path}: its {what} token ids run from {low} to {high}, but this model's {what} "
                             f"tokens are {UNGENERATED_TOKEN} to {limit}: the file is damaged or was made for "
                             "another model. Recreate it with `ppx-desktop voices add`")


def save_voice_file(path: str | Path, embeddings: torch.Tensor, cache: torch.Tensor) -> None:
    """Writes a `.pt` voice file in the presets' format, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # this call's own
    try:
        torch.save({"embeddings": embeddings.detach().cpu(), "cache": cache.detach().cpu()}, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _const(tokens: tp.Sequence[int], device) -> torch.Tensor:
    return torch.tensor(list(tokens), dtype=torch.long, device=device).view(1, -1, 1)


def run_prompts(gen: Generator, state: GenState, prompt_cfg: PromptConfig, *, mimi=None,
                voice: VoicePrompt | None = None, text_tokens: tp.Sequence[int] = (),
                silence_frames: int = SILENCE_FRAMES, collect_embeddings: bool = False,
                progress: tp.Callable[[int, int], None] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Resets `state` and runs the prompt phases.

    With `collect_embeddings` and an audio voice prompt, returns what a `.pt` voice file holds:
    the voice phase's temporal inputs `[N - 1, 1, 1, dim]` and the token cache after it.

    `mimi` is needed only for an audio voice prompt; `progress(done, total)` is called per step.
    """
    total = voice_phase_steps(voice) + text_phase_steps(text_tokens, silence_frames)
    ticks = _Ticker(total, progress)
    state.reset()
    collected = run_voice_phase(gen, state, mimi=mimi, voice=voice, prompt_cfg=prompt_cfg,
                                collect_embeddings=collect_embeddings, progress=ticks)
    run_text_phases(gen, state, prompt_cfg, text_tokens, silence_frames=silence_frames, progress=ticks)
    return collected


def voice_phase_steps(voice: VoicePrompt | None) -> int:
    if voice is None:
        return 0
    return len(voice.embeddings) if voice.embeddings is not None else len(voice.frames)


def text_phase_steps(text_tokens: tp.Sequence[int], silence_frames: int = SILENCE_FRAMES) -> int:
    return 2 * silence_frames + len(text_tokens)


class PromptTooLongError(ValueError):
    """The voice and persona prompts leave no room in the model's context."""


def span(frames: int) -> str:
    """A number of 80 ms frames as the user reads it: "20.5 s", "4.0 minutes"."""
    seconds = frames / FRAME_RATE
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def check_prompts_fit(voice: VoicePrompt | None, text_tokens: tp.Sequence[int], context: int,
                      silence_frames: int = SILENCE_FRAMES) -> int:
    """The prompt phases' steps; raises PromptTooLongError when they fill the model's context
    (`context` frames, from its config), since the start of the voice would be forgotten before
    the user said a word."""
    voice_steps, text_steps = voice_phase_steps(voice), text_phase_steps(text_tokens, silence_frames)
    steps = voice_steps + text_steps
    if steps >= context:
        raise PromptTooLongError(
            f"the prompts are longer than the model's context: the voice takes {voice_steps} frames "
            f"({span(voice_steps)}) and the persona prompt {len(text_tokens)} tokens, {steps} frames in all, but the "
            f"model remembers {context} frames ({span(context)}). Shorten the persona prompt"
            + (" or use a shorter voice recording" if voice is not None and voice.frames is not None else ""))
    return steps


class _Ticker:
    """Counts prompt steps across phases for one `progress(done, total)` callback."""

    def __init__(self, total: int, progress: tp.Callable[[int, int], None] | None):
        self.total, self.done, self.progress = total, 0, progress

    def __call__(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def run_voice_phase(gen: Generator, state: GenState, *, prompt_cfg: PromptConfig, mimi=None,
                    voice: VoicePrompt | None = None, collect_embeddings: bool = False,
                    progress: tp.Callable[[], None] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The voice-prompt phase on a freshly reset `state` (nothing to do without a voice).

    Split from the text phases so that a conversation can keep the state after the voice and
    switch persona prompts without re-running it. `progress()` is called once per step.
    """
    if voice is None:
        return None
    device = state.cache.device
    tick = progress or (lambda: None)
    if voice.embeddings is not None:
        dtype = next(gen.lm.parameters()).dtype
        for e in voice.embeddings:
            gen.step_embeddings(state, e.to(device=device, dtype=dtype).view(1, 1, -1))
            tick()
        state.cache.copy_(voice.cache.to(device))
        return None
    if mimi is None:
        raise ValueError("an audio voice prompt needs the Mimi codec")
    sine = _const(prompt_cfg.sine_tokens, device)
    enc = mimi.init_encoder_state(1)
    collected = []
    for frame in voice.frames:
        x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).to(device).view(1, 1, -1)
        codes = mimi.encode_step(x, enc)
        out = gen.step(state, user=sine, agent=codes, text=TEXT_PAD, return_embeddings=collect_embeddings)
        if out is not None and collect_embeddings:
            collected.append(out.embeddings)
        tick()
    if collect_embeddings and collected:
        return torch.stack(collected, dim=0), state.cache.clone()
    return None


def run_text_phases(gen: Generator, state: GenState, prompt_cfg: PromptConfig, text_tokens: tp.Sequence[int],
                    *, silence_frames: int = SILENCE_FRAMES, progress: tp.Callable[[], None] | None = None) -> None:
    """Silence, the persona prompt's tokens, silence: continues `state` after the voice phase."""
    device = state.cache.device
    sine, silence = _const(prompt_cfg.sine_tokens, device), _const(prompt_cfg.silence_tokens, device)
    tick = progress or (lambda: None)
    for tokens in ([TEXT_PAD] * silence_frames, list(text_tokens), [TEXT_PAD] * silence_frames):
        for tok in tokens:
            gen.step(state, user=sine, agent=silence, text=int(tok))
            tick()
