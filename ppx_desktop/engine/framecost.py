"""What one captured frame moves, per precision: measured by the byte trace on the meta device.

`measure_frame(config, precision, kv_slots)` builds the model on the meta device (no memory),
runs one frame of the captured frame function (Mimi encode, temporal pass over `kv_slots` of the
KV cache, text sampling, the 8 agent depformer sub-steps, Mimi decode) under `ByteTrace` and
returns the bytes moved and the kernels launched. The released model's figures are stored in
`RELEASED` (a trace at that size takes seconds, int4's quantisation on meta half a minute) and a
test re-measures them; `frame_bytes` serves both. They feed the automatic precision (can this
GPU read a frame within 80 ms?), `status` and the README's table.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FrameCost:
    bytes_moved: int  # read + written by every kernel of the frame
    bytes_read: int
    kernels: int


# Measured with `measure_frame(ModelConfig(), precision, kv_slots)` (torch 2.13, meta device);
# tests/engine/test_framecost.py re-measures them. kv_slots: 750 is the first minute's reads (the
# first of four KV parts), 3000 the full window of a long conversation.
RELEASED = {
    ("bfloat16", 750): FrameCost(15_579_768_815, 15_540_663_720, 3384),
    ("bfloat16", 3000): FrameCost(16_759_992_815, 16_720_714_470, 3384),
    ("int8", 750): FrameCost(8_209_031_663, 8_169_926_568, 3384),
    ("int8", 3000): FrameCost(9_389_255_663, 9_349_977_318, 3384),
    ("int4", 750): FrameCost(4_748_273_647, 4_709_168_552, 3384),
    ("int4", 3000): FrameCost(5_928_497_647, 5_889_219_302, 3384),
}


def measure_frame(config, precision: str, kv_slots: int | None = None) -> FrameCost:
    """Traces one captured frame of `config` in `precision` on the meta device, attention reading
    `kv_slots` of the temporal cache (None: the whole context)."""
    from .bytetrace import trace_bytes
    from .config import FRAME_SIZE
    from .framestep import FrameStep
    from .generator import Generator
    from .memory import PRECISIONS
    from .opcount import random_model
    from .sampling import SamplingConfig

    dtype, quant = PRECISIONS[precision]
    device = torch.device("meta")
    with torch.no_grad():
        model = random_model(config, device, dtype, quant)
        gen = Generator(model.lm, SamplingConfig())
        state = gen.init_state(1)
        while state.offset <= config.lm.max_delay + 1:  # past the start-up frames, as a conversation is
            gen.step(state, user=torch.zeros(1, config.lm.audio_per_stream, 1, dtype=torch.long, device=device))
        fs = FrameStep(model, gen, capture="off")
        codec = fs.init_codec_state()
        fs._pcm_host.copy_(torch.from_numpy(np.zeros(FRAME_SIZE, np.float32)))
        limit = kv_slots if kv_slots is not None and kv_slots < config.lm.context else None
        trace = trace_bytes(fs._frame, fs._pcm_dev, state, codec, config.lm.audio_per_stream, None, limit)
    return FrameCost(trace.total, trace.read, len(trace.kernels))


@functools.lru_cache(maxsize=32)
def frame_cost(config, precision: str, kv_slots: int | None = None) -> FrameCost:
    """The stored figure for the released model, else a fresh trace (kept for the process)."""
    from .config import ModelConfig

    slots = kv_slots if kv_slots is not None else config.lm.context
    released = dataclasses.replace(ModelConfig(), lm=dataclasses.replace(ModelConfig().lm, context=config.lm.context))
    if config == ModelConfig() or (config == released and slots <= config.lm.context):
        key = (precision, 750 if slots <= 750 else 3000)
        if key in RELEASED:
            return RELEASED[key]
    return measure_frame(config, precision, kv_slots)


def frame_bytes(config, precision: str, kv_slots: int | None = None) -> int:
    return frame_cost(config, precision, kv_slots).bytes_moved
