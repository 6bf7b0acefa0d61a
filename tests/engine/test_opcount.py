"""Operations per frame at the released depth: the eager frame step's launch budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.opcount import OpCounter, count_ops, deep_narrow_config, random_model
from ppx_desktop.engine.prompts import run_prompts
from ppx_desktop.engine.sampling import SamplingConfig

# The reference issues about 10,200 per frame (performance.md §2d); the budget is 3,000.
BUDGET = 3000


def test_counter_splits_views_from_compute():
    x = torch.ones(4, 4)
    n, counter = count_ops(lambda: (x.view(16) + 1).t().sum())
    assert n == 2 and counter.ops == {"add": 1, "sum": 1}
    assert counter.views["view"] == 1 and counter.views["t"] == 1


@pytest.mark.slow
def test_frame_ops_at_released_depth_within_budget():
    config = deep_narrow_config()
    assert (config.lm.num_layers, config.lm.depformer_num_layers, config.lm.dep_q, config.lm.context) == \
        (32, 6, 16, 3000)
    assert config.mimi.transformer.num_layers == 8 and config.mimi.num_codebooks == 8
    model = random_model(config, torch.device("cpu"), torch.float32)
    gen = Generator(model.lm, SamplingConfig())
    state = gen.init_state(1)
    run_prompts(gen, state, config.prompt, silence_frames=2)
    fs = FrameStep(model, gen, capture="off")
    codec = fs.init_codec_state()
    pcm = np.zeros(FRAME_SIZE, np.float32)
    fs(state, codec, pcm)  # the first frame after the prompts runs fewer depformer sub-steps
    counter = OpCounter()
    with counter:
        fs(state, codec, pcm)
    assert counter.ops["_scaled_dot_product_flash_attention_for_cpu"] == 32 + 8 * 6 + 2 * 8  # every layer ran
    assert counter.total <= BUDGET, counter.ops.most_common(12)
