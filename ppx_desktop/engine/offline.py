"""The offline flow of the reference (`moshi.offline`) on our engine: user audio in, agent audio
and text out, frame by frame, exactly as a live conversation would process it."""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from .config import FRAME_SIZE
from .framestep import FrameStep
from .generator import Generator, GeneratorOptions
from .model import LoadedModel
from .prefill import Prefiller
from .prompts import VoicePrompt
from .sampling import SamplingConfig


@dataclass
class OfflineResult:
    pcm: np.ndarray  # [T] float32, the agent's audio, as long as the user's
    text_ids: list[int]  # one text token per 80 ms frame
    text: list[str]  # the same, as the reference's JSON writes them
    user_text_ids: list[int] | None = None  # with a transcriber: the user's text token per frame
    end_of_turn: list[float] | None = None  # and its end-of-turn probability


def run_offline(model: LoadedModel, user_audio: np.ndarray, *, voice: VoicePrompt | None,
                text_tokens: tp.Sequence[int], sampling: SamplingConfig,
                rng: torch.Generator | None = None, options: GeneratorOptions | None = None,
                progress: tp.Callable[[int, int], None] | None = None, capture: str = "off",
                transcriber=None) -> OfflineResult:
    """Runs the prompt phases, then streams `user_audio` (24 kHz mono float) through the model.

    The last partial frame is zero-padded; the output is trimmed to the input's length. Frames
    run through `FrameStep` (eager by default: `capture` as in `FrameStep`).
    """
    from ..audio.files import frames

    gen = Generator(model.lm, sampling, options or GeneratorOptions(), rng)
    state = gen.init_state(1)
    Prefiller(gen).prompts(state, model.config.prompt, mimi=model.mimi, voice=voice, text_tokens=text_tokens)
    fs = FrameStep(model, gen, capture=capture, transcriber=transcriber)
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    user_frames = frames(np.asarray(user_audio, dtype=np.float32), FRAME_SIZE)
    pcm_out, ids, user_ids, eot = [], [], [], []
    for i, frame in enumerate(user_frames):
        result = fs(state, codec, frame)
        pcm_out.append(result.pcm)
        ids.append(result.text_id)
        user_ids.append(result.user_text_id)
        eot.append(result.end_of_turn)
        if progress is not None:
            progress(i + 1, len(user_frames))
    pcm = np.concatenate(pcm_out) if pcm_out else np.zeros(0, np.float32)
    length = len(user_audio)
    pcm = pcm[:length] if len(pcm) >= length else np.pad(pcm, (0, length - len(pcm)))
    texts = [model.tokenizer.piece_text(i) for i in ids]
    if transcriber is None:
        return OfflineResult(pcm, ids, texts)
    return OfflineResult(pcm, ids, texts, user_ids, eot)
