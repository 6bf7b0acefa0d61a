"""How much sooner the semantic end of turn ends a hands-free turn than the silence does.

The same recording goes through both detectors frame by frame, as the controller feeds them: the
voice detector (`TurnDetector`, the app's hands-free settings) and the semantic rule
(`SemanticEndOfTurn`) on the speech-to-text model's end-of-turn probability for each frame
(computed as the app's frame computes it: `Transcriber.step` on the frame's codes). For every turn
the voice detector finds, the report gives when its silence ended the turn, when the semantic
rule would have, and whether that was before the speech itself had ended (the user cut off).

The simulation gives the semantic rule each frame's probability at once; in the app it arrives
after the frame has run on the GPU (one frame later on a card that keeps real time), so the gain
in the app is up to 80 ms smaller than here.
"""

from __future__ import annotations

import math
import typing as tp
from dataclasses import asdict, dataclass, field

import numpy as np

from ..audio.vad import TurnDetector, VadConfig
from ..engine.config import FRAME_RATE, FRAME_SIZE
from .semantic_turn import SemanticEndOfTurn, SemanticTurnRule

LEAD_SILENCE_S = 0.5  # a conversation is already running when the user starts: the models have heard silence


@dataclass(frozen=True)
class TurnTiming:
    """One turn, in seconds of the recording."""

    speech_start_s: float
    speech_end_s: float  # where the voice detector heard the speech stop
    silence_end_s: float  # when its silence ended the turn
    semantic_end_s: float | None  # when the semantic rule would have (None: it did not fire in this turn)
    cut_off: bool  # the semantic rule fired before the speech had ended

    @property
    def gain_s(self) -> float:
        """How much sooner the turn ends semantically (0 when the rule did not fire, or cut the user off)."""
        if self.semantic_end_s is None or self.cut_off:
            return 0.0
        return self.silence_end_s - self.semantic_end_s


@dataclass
class TurnTimingReport:
    end_silence_s: float
    rule: SemanticTurnRule
    seconds: float
    turns: list[TurnTiming] = field(default_factory=list)

    @property
    def fired(self) -> int:
        return sum(t.semantic_end_s is not None and not t.cut_off for t in self.turns)

    @property
    def cut_off(self) -> int:
        return sum(t.cut_off for t in self.turns)

    @property
    def median_gain_s(self) -> float:
        gains = [t.gain_s for t in self.turns if t.semantic_end_s is not None and not t.cut_off]
        return float(np.median(gains)) if gains else 0.0

    def to_json(self) -> dict:
        return {"end_silence_s": self.end_silence_s, "rule": asdict(self.rule), "seconds": self.seconds,
                "turns": [dict(asdict(t), gain_s=t.gain_s) for t in self.turns],
                "semantic_ended": self.fired, "cut_off": self.cut_off, "median_gain_s": self.median_gain_s}

    def summary(self) -> str:
        lines = [f"{len(self.turns)} turns in {self.seconds:.1f} s; "
                 f"silence ends a turn after {self.end_silence_s:g} s; "
                 f"semantic rule: probability >= {self.rule.threshold:g} for {self.rule.hold_frames} frames "
                 f"and {self.rule.min_silence_s:g} s of silence"]
        for i, t in enumerate(self.turns, 1):
            if t.semantic_end_s is None:
                what = "semantic: did not fire (the silence ends it)"
            elif t.cut_off:
                what = f"semantic: {t.semantic_end_s:.2f} s, BEFORE the speech ended (the user would be cut off)"
            else:
                what = f"semantic: {t.semantic_end_s:.2f} s, {t.gain_s:.2f} s sooner"
            lines.append(f"turn {i}: speech {t.speech_start_s:.2f}-{t.speech_end_s:.2f} s; "
                         f"silence: {t.silence_end_s:.2f} s; {what}")
        lines.append(f"semantic ended {self.fired} of {len(self.turns)} turns sooner "
                     f"(median {self.median_gain_s:.2f} s), cut off {self.cut_off}")
        return "\n".join(lines)


def time_turn_ends(audio: np.ndarray, probabilities: tp.Sequence[float], vad: VadConfig,
                   rule: SemanticTurnRule | None = None) -> TurnTimingReport:
    """Both detectors over `audio` (24 kHz, whole frames as `probabilities` has entries: one per
    frame)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    n = min(len(probabilities), len(x) // FRAME_SIZE)
    detector = TurnDetector(vad)
    semantic = SemanticEndOfTurn(rule)
    report = TurnTimingReport(vad.end_silence_s, semantic.rule, n / FRAME_RATE)
    fired: float | None = None
    for i in range(n):
        event = detector.push(x[i * FRAME_SIZE:(i + 1) * FRAME_SIZE])
        t = (i + 1) / FRAME_RATE
        if event is not None and event.kind == "speech_started":
            fired = None
            semantic.reset()
        if event is not None and event.kind == "turn_ended":
            report.turns.append(TurnTiming(event.t_speech_start, event.t_speech_end, event.t_end, fired,
                                           fired is not None and fired < event.t_speech_end))
            fired = None
            semantic.reset()
        elif detector.in_turn and fired is None and semantic.push(float(probabilities[i]), detector.silence_s):
            fired = t
    return report


def end_of_turn_probabilities(stt, audio: np.ndarray) -> np.ndarray:
    """The end-of-turn probability the app's frame gives for each whole frame of `audio`: a loaded
    speech-to-text model (`engine.stt_load.LoadedSTT`) stepped as the conversation steps it."""
    import torch

    from ..audio.files import frames
    from ..engine.transcriber import Transcriber

    transcriber = Transcriber(stt)
    enc = stt.mimi.init_encoder_state(1)
    out = []
    with torch.no_grad():
        for frame in frames(np.asarray(audio, dtype=np.float32), FRAME_SIZE):
            pcm = torch.from_numpy(frame).to(stt.device).view(1, 1, FRAME_SIZE)
            codes = stt.mimi.encode_step(pcm, enc, num_codebooks=transcriber.n_q)
            out.append(transcriber.step(codes)[1])
    probs = torch.cat(out).float().cpu().numpy() if out else np.zeros(0, np.float32)
    return np.where(np.isfinite(probs), probs, math.nan)


def with_lead_and_tail(audio: np.ndarray, vad: VadConfig) -> np.ndarray:
    """The recording as a conversation hears it: silence before it, and enough after it for the
    silence to end its last turn; cut to whole frames."""
    lead = np.zeros(int(LEAD_SILENCE_S * 24_000), np.float32)
    tail = np.zeros(int((vad.end_silence_s + 0.5) * 24_000), np.float32)
    x = np.concatenate([lead, np.asarray(audio, dtype=np.float32).reshape(-1), tail])
    return x[: len(x) // FRAME_SIZE * FRAME_SIZE]
