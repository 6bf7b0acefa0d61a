"""Voice activity and end of turn for the turn-based modes: silero-vad on 16 kHz, or push-to-talk.

silero-vad's wheel ships the model files, so nothing is downloaded. The ONNX model runs through
onnxruntime (measured 0.12 ms per 32 ms window here, against 7-12 ms for the TorchScript model on
the same loaded 2-core CPU); when onnxruntime is missing the TorchScript file is used instead. The
``silero_vad`` package itself is never imported: its import sets ``torch.set_num_threads(1)`` for
the whole process, which would slow the engine.

:class:`TurnDetector` is pure: feed 1920-sample frames at 24 kHz, get events back; no threads.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .resample import FRAME, RATE, StreamResampler

VAD_RATE = 16_000
WINDOW = 512  # silero's window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model expects in front of each window


def _model_file(name: str) -> Path:
    spec = importlib.util.find_spec("silero_vad")  # locates the package without running its __init__
    if spec is None or spec.origin is None:
        raise RuntimeError("Voice detection needs the silero-vad package: pip install silero-vad")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        raise RuntimeError(f"silero-vad is installed but {path} is missing; reinstall it: pip install -U silero-vad")
    return path


class SileroVad:
    """Streaming silero-vad: ``prob(window)`` for consecutive 512-sample windows at 16 kHz."""

    def __init__(self, prefer_onnx: bool = True) -> None:
        self._session = self._jit = None
        if prefer_onnx and importlib.util.find_spec("onnxruntime") is not None:
            import onnxruntime

            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # tiny model: threads only add hand-offs
            self._session = onnxruntime.InferenceSession(
                str(_model_file("silero_vad.onnx")), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            self._sr = np.array(VAD_RATE, dtype=np.int64)
        else:
            import torch

            self._jit = torch.jit.load(str(_model_file("silero_vad.jit")), map_location="cpu").eval()
        self.backend = "onnxruntime" if self._session is not None else "torchscript"
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        if self._jit is not None:
            self._jit.reset_states()

    def prob(self, window: np.ndarray) -> float:
        if self._session is not None:
            x = np.concatenate([self._context, window]).reshape(1, -1)
            self._context = x[0, -CONTEXT:].copy()
            out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            return float(out.reshape(-1)[0])
        import torch

        with torch.inference_mode():
            return float(self._jit(torch.from_numpy(np.ascontiguousarray(window)), VAD_RATE).reshape(-1)[0])


@dataclass(frozen=True)
class VadConfig:
    """End-of-turn settings.

    Args:
        end_silence_s: silence that ends a turn (1.5 s like the turn-based port; 0.5-0.8 s feels snappier).
        min_speech_s: speech needed before a turn starts (coughs and clicks are ignored).
        threshold: speech probability that counts as speech.
        neg_threshold: probability below which a window counts as silence (hysteresis); None = threshold - 0.15.
        pre_roll_s: audio kept from before the detected onset, so the first syllable is not cut.
        max_turn_s: a turn is ended after this long even without silence.
    """

    end_silence_s: float = 1.5
    min_speech_s: float = 0.3
    threshold: float = 0.5
    neg_threshold: float | None = None
    pre_roll_s: float = 0.3
    max_turn_s: float = 60.0

    def __post_init__(self) -> None:
        if self.end_silence_s <= 0 or self.min_speech_s < 0 or not 0 < self.threshold < 1:
            raise ValueError("VadConfig needs end_silence_s > 0, min_speech_s >= 0 and 0 < threshold < 1")


@dataclass(frozen=True)
class TurnEvent:
    kind: str  # "speech_started" | "turn_ended"
    audio: np.ndarray | None  # the whole turn at 24 kHz (with pre-roll) for turn_ended
    t_end: float  # seconds of pushed audio when the event was decided
    t_speech_start: float = 0.0
    t_speech_end: float = 0.0  # where the speech itself stopped (t_end minus the closing silence)


class TurnDetector:
    """Feed 24 kHz frames, get ``speech_started`` and ``turn_ended`` events.

    Push-to-talk replaces the VAD: :meth:`press` starts a turn and :meth:`release` ends it.
    ``push(frame, ignore=True)`` (while the agent speaks, in half-duplex) treats the frame as silence.
    """

    def __init__(self, config: VadConfig | None = None, vad: SileroVad | None = None) -> None:
        self.config = config or VadConfig()
        self._vad = vad
        self._rs = StreamResampler(RATE, VAD_RATE)
        self._neg = self.config.neg_threshold if self.config.neg_threshold is not None else self.config.threshold - 0.15
        self._pre = deque(maxlen=max(1, int(np.ceil(self.config.pre_roll_s * RATE / FRAME))))
        self.reset()

    @property
    def vad(self) -> SileroVad:
        if self._vad is None:
            self._vad = SileroVad()
        return self._vad

    def reset(self) -> None:
        self._rs.reset()
        if self._vad is not None:
            self._vad.reset()
        self._buf16 = np.zeros(0, dtype=np.float32)
        self._samples = 0  # 24 kHz samples pushed
        self._p = 0.0
        self._state = "idle"  # idle -> candidate -> speaking (-> idle on turn end)
        self._turn: list[np.ndarray] = []
        self._speech_s = 0.0
        self._silence_s = 0.0
        self._start_t = 0.0
        self._ptt = False
        self._pre.clear()

    @property
    def speech_probability(self) -> float:
        """The last window's speech probability."""
        return self._p

    @property
    def in_turn(self) -> bool:
        return self._state == "speaking" or self._ptt

    @property
    def silence_s(self) -> float:
        """Silence heard since the user's last speech in this turn (0 while they speak)."""
        return self._silence_s

    def turn_audio(self) -> np.ndarray:
        """The turn heard so far at 24 kHz, with its pre-roll (empty outside a turn)."""
        return np.concatenate(self._turn) if self._turn else np.zeros(0, np.float32)

    # --- push-to-talk ---

    def press(self) -> TurnEvent:
        self._ptt = True
        self._state = "idle"
        self._turn = list(self._pre)
        self._start_t = self._samples / RATE
        return TurnEvent("speech_started", None, self._start_t, self._start_t)

    def release(self) -> TurnEvent | None:
        if not self._ptt:
            return None
        self._ptt = False
        return self._end(self._samples / RATE)

    def _end(self, t_speech_end: float) -> TurnEvent:
        audio = self.turn_audio()
        t = self._samples / RATE
        tail = max(0, int(round((t - t_speech_end - 0.2) * RATE)))  # keep 200 ms after the speech
        if tail and tail < audio.shape[0]:
            audio = audio[: audio.shape[0] - tail]
        self._turn, self._state, self._silence_s, self._speech_s = [], "idle", 0.0, 0.0
        self._pre.clear()
        return TurnEvent("turn_ended", audio, t, self._start_t, t_speech_end)

    # --- VAD ---

    def push(self, frame: np.ndarray, ignore: bool = False) -> TurnEvent | None:
        x = np.asarray(frame, dtype=np.float32)
        self._samples += x.shape[0]
        if self._ptt:
            self._turn.append(x.copy())
            return None
        probs = self._probs(np.zeros_like(x) if ignore else x)
        dt = WINDOW / VAD_RATE
        event: TurnEvent | None = None
        t0 = (self._samples - x.shape[0]) / RATE
        if self._state == "idle":
            self._pre.append(x.copy())
        else:
            self._turn.append(x.copy())
        for i, p in enumerate(probs):
            t = t0 + (i + 1) * x.shape[0] / RATE / max(1, len(probs))
            if self._state == "idle":
                if p >= self.config.threshold:
                    self._state, self._speech_s, self._silence_s = "candidate", dt, 0.0
                    self._start_t = t - dt
                    self._turn = list(self._pre)
            elif p >= self.config.threshold:
                self._speech_s += dt
                self._silence_s = 0.0
            elif p < self._neg:
                self._silence_s += dt
            if self._state == "candidate":
                if self._speech_s >= self.config.min_speech_s:
                    self._state = "speaking"
                    event = TurnEvent("speech_started", None, t, self._start_t)
                elif self._silence_s >= min(self.config.end_silence_s, 0.3):  # a click, not a turn
                    self._state, self._turn = "idle", []
            elif self._state == "speaking":
                if self._silence_s >= self.config.end_silence_s or t - self._start_t >= self.config.max_turn_s:
                    return self._end(t - self._silence_s)
        return event

    def _probs(self, x: np.ndarray) -> list[float]:
        self._buf16 = np.concatenate([self._buf16, self._rs.process(x)])
        out = []
        while self._buf16.shape[0] >= WINDOW:
            self._p = self.vad.prob(self._buf16[:WINDOW])
            out.append(self._p)
            self._buf16 = self._buf16[WINDOW:]
        return out
