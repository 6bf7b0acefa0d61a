"""The user's words, inside the frame: the speech-to-text model beside PersonaPlex.

`Transcriber` holds a loaded STT model's streaming generator and state. FrameStep encodes the
microphone once per frame into as many codebooks as the STT model reads (32; PersonaPlex takes
the first 8, which residual quantisation makes identical to its own 8-codebook encode) and calls
`Transcriber.step` on those codes in the same tensor-only frame function, so transcription rides
in the same captured graph and the same device-to-host copy (its text token and end-of-turn
probability).

The shared encode uses PersonaPlex's codec window (the reference PersonaPlex labels one slot of
Mimi's ring as the future, the current moshi package does not): PersonaPlex keeps exact parity,
and the speech-to-text model sees codes that can differ from its own reference's once Mimi's
ring wraps, about 10 s into a stream. `ppx-desktop transcribe` runs its own exact encode.

End of turn: of the model's extra heads (pause predictions), `EOT_HEAD` is used, its class
`EOT_CLASS` probability: the head Kyutai's Unmute reads for its semantic turn detection (not
checked against the released weights here).
"""

from __future__ import annotations

import typing as tp
from dataclasses import dataclass

import torch

from .config import FRAME_RATE
from .stt import STTGenerator, STTState
from .stt_words import Word, timestamped_words

EOT_HEAD = 2
EOT_CLASS = 0


@dataclass
class TouchedSTT:
    tokens: torch.Tensor
    lm: tuple


class Transcriber:
    """A loaded STT model (`stt_load.LoadedSTT`) streaming one user's audio.

    Args:
        stt: the loaded model (its own Mimi is not used: the frame's shared encode feeds it).
        greedy: argmax decoding (the released model's setting).
    """

    def __init__(self, stt, greedy: bool = True):
        self.stt = stt
        self.precision = str(stt.dtype).removeprefix("torch.")  # its weights (a quantised load says so)
        self.gen: STTGenerator = stt.generator(greedy=greedy)
        self.state: STTState = self.gen.init_state(1)
        self.n_q = stt.config.lm.n_q
        self.tokenizer = stt.tokenizer
        self.delay_seconds = float(stt.config.audio_delay_seconds)
        self.padding_id = stt.config.text_padding_token_id
        heads = stt.config.lm.extra_heads_num_heads
        self._eot = (min(EOT_HEAD, heads - 1), EOT_CLASS) if heads else None

    # --- the tensor part (inside the captured frame) ------------------------------------------
    def step(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """codes `[B, >= n_q, 1]` -> (text token `[B]` float32, end-of-turn probability `[B]`)."""
        out = self.gen.step(self.state, codes)
        if self._eot is None:
            eot = torch.zeros_like(out.text, dtype=torch.float32)
        else:
            eot = out.end_of_turn[:, self._eot[0], self._eot[1]]
        return out.text.float(), eot.float()

    # --- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        self.state.reset()

    def snapshot_touched(self, frames: int) -> TouchedSTT:
        """The token ring and the KV slots the next `frames` steps write (for capture and warm-up)."""
        return TouchedSTT(self.state.tokens.clone(), self.state.lm.snapshot_touched(frames))

    def restore_touched(self, snap: TouchedSTT) -> None:
        self.state.tokens.copy_(snap.tokens)
        self.state.lm.restore_touched(snap.lm)

    # --- words (host side) ---------------------------------------------------------------------
    def text_of(self, tokens: tp.Sequence[int]) -> str:
        """What the tokens so far say (live, before word times are known)."""
        return self.tokenizer.decode([int(t) for t in tokens if int(t) > self.padding_id]).strip()

    def words(self, tokens: tp.Sequence[int], first_frame: int) -> list[Word]:
        """Words with times in seconds of the conversation, for tokens that started at frame
        `first_frame` (the text lags the audio by the model's delay)."""
        offset = self.delay_seconds - first_frame / FRAME_RATE
        tok = self.tokenizer
        return timestamped_words([int(t) for t in tokens], tok.decode, tok.encode, tok.eos_id, offset,
                                 padding_token_id=self.padding_id)
