"""How much a quantised model's predictions differ from the full-precision model's, on real speech.

Two passes over the same conversation (a voice prompt, then a bundled spoken question and a few
seconds for the answer): the reference model runs greedy and records every token it chose and
its logits; the quantised model then runs teacher-forced on exactly those tokens (its depformer
too), so both predict from identical histories and every frame compares like with like. Only one
model is on the device at a time (the reference may stream layers from host memory on a small
GPU).

Reported per stream: top-1 agreement (text, and the 8 agent codebooks; the first is the
semantic one) and the KL divergence of the text and semantic-codebook distributions
(temperature 1), with a plain verdict.
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import FRAME_SIZE
from .generator import Generator, GeneratorOptions
from .prompts import run_prompts
from .sampling import SamplingConfig

ANSWER_SECONDS = 4.0
# Verdict thresholds on text top-1 agreement and semantic-codebook KL (nats per frame).
CLOSE = (0.95, 0.05)
USABLE = (0.85, 0.20)


@dataclass
class Recording:
    """What one pass saw and predicted, frame by frame (host tensors)."""

    columns: list[torch.Tensor | None] = field(default_factory=list)  # tokens chosen per step [1, 17]
    text_logits: list[torch.Tensor] = field(default_factory=list)  # [text_card] float32
    audio_logits: list[torch.Tensor] = field(default_factory=list)  # [8, card] float32 (agent codebooks)


@dataclass(frozen=True)
class QuantCheckResult:
    precision: str
    frames: int
    text_agreement: float
    audio_agreement: list[float]  # per agent codebook, the semantic one first
    text_kl: float
    semantic_kl: float

    @property
    def verdict(self) -> str:
        if self.text_agreement >= CLOSE[0] and self.semantic_kl <= CLOSE[1]:
            return "close to the full-precision model: differences are rare"
        if self.text_agreement >= USABLE[0] and self.semantic_kl <= USABLE[1]:
            return "usable: expect some different words and a slightly different voice"
        return "degraded: answers will often differ; use a larger precision if the GPU holds it"

    def to_dict(self) -> dict:
        return {"precision": self.precision, "frames": self.frames, "text_agreement": self.text_agreement,
                "audio_agreement": self.audio_agreement, "text_kl": self.text_kl, "semantic_kl": self.semantic_kl,
                "verdict": self.verdict}


def conversation_frames(audio: np.ndarray, answer_seconds: float = ANSWER_SECONDS) -> np.ndarray:
    """The user's frames: the clip, then silence while the agent answers. `[N, 1920]`"""
    from ..audio.files import frames

    silence = np.zeros(int(answer_seconds * 24_000), np.float32)
    return frames(np.concatenate([np.asarray(audio, np.float32), silence]), FRAME_SIZE)


def run_pass(model, voice, text_tokens: tp.Sequence[int], user_frames: np.ndarray,
             forced: Recording | None = None, progress: tp.Callable[[int, int], None] | None = None) -> Recording:
    """One pass: greedy and recording (`forced` None) or teacher-forced on `forced`'s tokens."""
    n = model.config.lm.audio_per_stream
    gen = Generator(model.lm, SamplingConfig.greedy(), GeneratorOptions(skip_forced_depformer=False,
                                                                        skip_forced_frames=False))
    state = gen.init_state(1)
    rec = Recording()
    with torch.no_grad():
        run_prompts(gen, state, model.config.prompt, mimi=model.mimi, voice=voice, text_tokens=text_tokens)
        enc = model.mimi.init_encoder_state(1)
        for i, frame in enumerate(user_frames):
            x = torch.from_numpy(np.ascontiguousarray(frame)).to(model.device).view(1, 1, -1)
            codes = model.mimi.encode_step(x, enc)
            tgt = state.offset % gen.ct
            column = forced.columns[i] if forced is not None else None
            out = gen.step_teacher_forced(state, codes, None if column is None else column.to(model.device))
            rec.columns.append(state.cache[:, :, tgt].cpu().clone() if out is not None else None)
            if out is not None:
                rec.text_logits.append(out.text_logits[0].float().cpu())
                rec.audio_logits.append(out.audio_logits[0, :n].float().cpu())
            if progress is not None:
                progress(i + 1, len(user_frames))
    return rec


def compare(reference: Recording, quantised: Recording, precision: str) -> QuantCheckResult:
    ref_t, q_t = torch.stack(reference.text_logits), torch.stack(quantised.text_logits)  # [T, V]
    ref_a, q_a = torch.stack(reference.audio_logits), torch.stack(quantised.audio_logits)  # [T, 8, card]
    text_agree = float((ref_t.argmax(-1) == q_t.argmax(-1)).float().mean())
    audio_agree = [float(x) for x in (ref_a.argmax(-1) == q_a.argmax(-1)).float().mean(0)]

    def kl(p_logits, q_logits) -> float:
        logp, logq = torch.log_softmax(p_logits, -1), torch.log_softmax(q_logits, -1)
        return float((logp.exp() * (logp - logq)).sum(-1).mean())

    return QuantCheckResult(precision, len(ref_t), text_agree, audio_agree, kl(ref_t, q_t),
                            kl(ref_a[:, 0], q_a[:, 0]))
