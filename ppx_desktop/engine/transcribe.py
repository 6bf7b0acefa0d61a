"""Transcribing one recording with the speech-to-text model, as Kyutai's script for a file does.

The flow of `scripts/stt_from_file_pytorch.py` (delayed-streams-modeling): the audio is padded
with zeros to whole 80 ms frames; `ceil(audio_silence_prefix_seconds * 12.5)` silent frames go
before it and `ceil(audio_delay_seconds * 12.5)` after it (the text lags the audio by that delay,
so the flush lets the last words out); each frame is encoded by a streaming Mimi into the model's
32 codebooks and stepped through the model, greedily by default; the text tokens, one per frame,
become words with times (stt_words.py), shifted back by the whole seconds of the prefix plus the
delay.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from .config import FRAME_RATE, FRAME_SIZE
from .stt_load import LoadedSTT
from .stt_words import Word, timestamped_words


@dataclass
class Transcription:
    words: list[Word]
    tokens: list[int]  # one text token per frame fed (prefix, audio, flush)
    end_of_turn: np.ndarray  # [frames, heads, extra_heads_dim] float32 probabilities
    prefix_frames: int
    flush_frames: int
    offset_seconds: float  # subtracted from frame times to give the words' times


def transcribe_audio(stt: LoadedSTT, audio: np.ndarray, *, greedy: bool = True, rng: torch.Generator | None = None,
                     progress: tp.Callable[[int, int], None] | None = None) -> Transcription:
    """`audio`: 24 kHz mono float samples. Returns the words and what the model emitted per frame."""
    from ..audio.files import frames

    config = stt.config
    audio_frames = frames(np.asarray(audio, dtype=np.float32), FRAME_SIZE)
    silence = np.zeros((1, FRAME_SIZE), np.float32)
    fed = np.concatenate([np.repeat(silence, config.prefix_frames, 0), audio_frames,
                          np.repeat(silence, config.flush_frames, 0)])
    gen = stt.generator(greedy=greedy, rng=rng)
    state = gen.init_state(1)
    enc = stt.mimi.init_encoder_state(1)
    texts, heads = [], []
    with torch.no_grad():
        for i, frame in enumerate(fed):
            pcm = torch.from_numpy(frame).to(stt.device).view(1, 1, FRAME_SIZE)
            codes = stt.mimi.encode_step(pcm, enc, exact_window=True, num_codebooks=config.lm.n_q)
            out = gen.step(state, codes)
            texts.append(out.text)
            heads.append(out.end_of_turn[0])
            if progress is not None:
                progress(i + 1, len(fed))
    tokens = torch.cat(texts).tolist() if texts else []
    end_of_turn = torch.stack(heads).cpu().numpy() if heads else np.zeros((0, 0, 0), np.float32)
    # The script shifts by int(prefix frames / frame rate): whole seconds of prefix, plus the delay.
    offset = int(config.prefix_frames / FRAME_RATE) + config.audio_delay_seconds
    tok = stt.tokenizer
    words = timestamped_words(tokens, tok.decode, tok.encode, tok.eos_id, offset,
                              padding_token_id=config.text_padding_token_id)
    return Transcription(words, tokens, end_of_turn, config.prefix_frames, config.flush_frames, offset)
