"""The byte trace: counting rules, and quantised frames that never hold a float copy of a weight."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from testkit import FIXTURES, load_golden, tiny_config_dict

from ppx_desktop.engine.bytetrace import trace_bytes
from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.config import FRAME_SIZE, ModelConfig
from ppx_desktop.engine.framecost import RELEASED, measure_frame
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.int8 import WeightOnlyInt8Linear
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.mimi import Mimi
from ppx_desktop.engine.prompts import run_prompts
from ppx_desktop.engine.quant import convert_for_quant, quantize_lm, quantized_weight_shapes
from ppx_desktop.engine.sampling import SamplingConfig


def test_counting_rules():
    table = torch.randn(1000, 64)
    cache = torch.zeros(1, 4, 300, 16)
    idx, src = torch.tensor([3]), torch.ones(1, 4, 1, 16)
    trace = trace_bytes(lambda: (torch.nn.functional.embedding(idx, table), cache.index_copy_(2, idx, src),
                                 cache[:, :, :100].sum()))
    emb, scatter, total = trace.kernels
    assert emb.read == 8 + 64 * 4 and emb.written == 64 * 4  # one row read, not the table
    assert scatter.written == 4 * 16 * 4  # the slot written, not the whole cache
    assert total.read == 4 * 100 * 16 * 4  # a view of 100 slots reads 100 slots


@pytest.fixture(scope="module")
def model():
    config = ModelConfig.from_dict(tiny_config_dict())
    mimi, lm = Mimi(config.mimi, device="meta"), LMModel(config.lm, device="meta")
    load_weights(mimi, FIXTURES / "tiny_mimi.safetensors", dtype=torch.float32)
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", dtype=torch.float32, plan_fn=lm_plan)
    return types.SimpleNamespace(config=config, mimi=mimi.eval(), lm=lm.eval(), device=torch.device("cpu"))


def frame_trace(model, lm):
    gen = Generator(lm, SamplingConfig(top_k_text=8, top_k_audio=8))
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt, text_tokens=[5, 6])
    fs = FrameStep(types.SimpleNamespace(mimi=model.mimi), gen, capture="off")
    codec = fs.init_codec_state()
    wav = load_golden("mimi_golden.safetensors")["waveform"][0, 0].numpy()
    fs(state, codec, wav[:FRAME_SIZE])
    return trace_bytes(fs, state, codec, wav[FRAME_SIZE:2 * FRAME_SIZE])


def quantised_shapes(config, kind):
    template = LMModel(config.lm, device="meta")
    shapes = {k: tuple(v.shape) for k, v in template.state_dict().items()}
    return quantized_weight_shapes(convert_for_quant(template, kind), shapes)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_a_quantised_frame_never_writes_a_float_weight(model, kind):
    shapes = quantised_shapes(model.config, kind)
    assert (192, 64) in shapes and (96, 32) in shapes  # temporal in_proj, one depformer step's block
    trace = frame_trace(model, quantize_lm(model.lm, kind))
    assert trace.float_outputs(shapes) == []
    kernel = "_weight_int8pack_mm" if kind == "int8" else "_weight_int4pack_mm_for_cpu"
    assert trace.by_op()[kernel][0] > 50 and "mm" in trace.by_op()  # Mimi's own linears stay float


def test_the_check_catches_a_dequantising_layer(model):
    """The old path, `linear(x, w.to(x.dtype)) * scale`, writes a float weight every frame."""

    class Dequantising(WeightOnlyInt8Linear):
        def forward(self, x, step=None):
            return torch.nn.functional.linear(x, self.weight.to(x.dtype)) * self.scales

    lm = quantize_lm(model.lm, "int8")
    lm.text_linear.__class__ = Dequantising
    caught = frame_trace(model, lm).float_outputs(quantised_shapes(model.config, "int8"))
    assert [k.op for k in caught] == ["_to_copy"]


def test_bytes_fall_with_the_precision(model):
    moved = {kind: frame_trace(model, model.lm if kind == "none" else quantize_lm(model.lm, kind)).total
             for kind in ("none", "int8", "int4")}
    assert moved["int4"] < moved["int8"] < moved["none"]


def test_released_frame_table_ratios():
    """What the README's precision table rests on (re-measured in test_framecost.py)."""
    for slots in (750, 3000):
        bf16 = RELEASED[("bfloat16", slots)].bytes_moved
        assert RELEASED[("int8", slots)].bytes_moved / bf16 < 0.57
        assert RELEASED[("int4", slots)].bytes_moved / bf16 < 0.36


@pytest.mark.slow
def test_released_frame_table_is_measured():
    config = ModelConfig()
    for precision in ("bfloat16", "int8"):
        for slots in (750, 3000):
            got = measure_frame(config, precision, slots)
            assert got == RELEASED[(precision, slots)], (precision, slots, got)
    np.testing.assert_equal(measure_frame(config, "int4", 750), RELEASED[("int4", 750)])
