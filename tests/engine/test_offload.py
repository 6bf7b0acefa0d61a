"""Layers kept in host memory and streamed in: same outputs, the right plan, clear refusals."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from ppx_desktop.engine.config import ModelConfig
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.model import ModelError, load_model, memory_advice
from ppx_desktop.engine.offload import LayerStreamer, OffloadPlan, layer_bytes, plan_offload
from ppx_desktop.engine.sampling import SamplingConfig

GiB = 2**30


def _lm(tiny_config, layers: int) -> LMModel:
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config.lm, num_layers=layers)
    return LMModel(cfg).eval()


def _run(lm: LMModel, frames: int = 20):
    """Greedy steps past the 16-slot ring's wrap; text and audio logits of every model call."""
    gen = Generator(lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    logits = []
    for t in range(frames):
        out = gen.step(state, user=torch.full((1, 8, 1), t % 5), return_logits=True)
        if out is not None:
            logits.append((out.text_logits, out.audio_logits))
    return logits


@pytest.mark.parametrize("layers, streamed", [(2, 1), (2, 2), (3, 3)], ids=["1-of-2", "2-of-2", "3-of-3"])
def test_streamed_layers_give_the_same_outputs(tiny_config, layers, streamed):
    lm = _lm(tiny_config, layers)
    ref = _run(lm)
    moved = copy.deepcopy(lm)
    plan = OffloadPlan(tuple(range(layers - streamed, layers)), layer_bytes(tiny_config, torch.float32))
    streamer = LayerStreamer(moved, plan, torch.device("cpu"))
    # What the layers compute with is the staging copy, not the host tensors.
    staged = {t.data_ptr() for slot in streamer.staging for t in slot.values()}
    assert {p.data_ptr() for p in moved.transformer.layers[-1].parameters()} <= staged
    # Host copies hold the real weights; the staging slots are overwritten layer after layer.
    for slot in streamer.staging:
        for t in slot.values():
            t.fill_(float("nan"))
    got = _run(moved)
    assert len(got) == len(ref)
    for (t_ref, a_ref), (t, a) in zip(ref, got):
        assert torch.equal(t, t_ref) and torch.equal(a, a_ref)
    assert streamer.copies == streamed * len(ref)  # on the CPU: one synchronous copy per layer call
    assert moved.streamer is streamer


def test_plan_for_the_released_model():
    config = ModelConfig()
    per_layer = layer_bytes(config, torch.bfloat16, "int8")
    assert 0.18 * GiB < per_layer < 0.2 * GiB  # 206 M weights in one temporal layer, one byte each
    assert plan_offload(config, 40 * GiB, torch.bfloat16, "int8").layers == ()  # fits: nothing moves
    plan = plan_offload(config, 8 * GiB, torch.bfloat16, "int8")
    assert plan.layers == tuple(range(32 - len(plan.layers), 32)) and 10 <= len(plan.layers) <= 25
    assert plan.keeps_on_host("transformer.layers.31.gating.linear_in.weight")
    assert not plan.keeps_on_host("transformer.layers.3.gating.linear_in.weight")
    assert not plan.keeps_on_host("depformer.layers.31.gating.0.linear_in.weight")
    summary = plan.summary()
    assert f"{len(plan.layers)} of the model's layers" in summary and "slower than real time" in summary
    assert "Turn-based modes only" in summary
    assert plan_offload(config, 8 * GiB, torch.bfloat16, "int8", layers=4).layers == (28, 29, 30, 31)
    with pytest.raises(ValueError, match="even with all 32 layers"):
        plan_offload(config, 1 * GiB, torch.bfloat16, "int8")


def test_memory_advice_names_a_precision_then_a_context_then_offloading():
    config, cpu = ModelConfig(), torch.device("cpu")
    assert "use int8 or int4 (--quant int8)" in memory_advice(config, cpu, torch.bfloat16, "none", 20 * GiB, 14 * GiB)
    assert "use int4 (--quant int4)" in memory_advice(config, cpu, torch.bfloat16, "none", 20 * GiB, 8 * GiB)
    advice = memory_advice(config, cpu, torch.bfloat16, "none", 20 * GiB, 7 * GiB)
    assert "--quant int4 --context 1250 (1.7 minutes" in advice
    advice = memory_advice(config, cpu, torch.bfloat16, "none", 20 * GiB, 6 * GiB)
    assert "--quant int4 --offload-layers" in advice and "Turn-based modes only" in advice
    assert "use a GPU with more memory" in memory_advice(config, cpu, torch.bfloat16, "int8", 11 * GiB, GiB // 2)


def test_offloading_needs_a_gpu_and_runs_eagerly(tiny_model_dir, tiny_config):
    with pytest.raises(ModelError, match="needs --device cuda"):
        load_model(tiny_model_dir, device="cpu", offload_layers=1)
    model = load_model(tiny_model_dir, device="cpu", offload_layers=0)
    assert model.lm.streamer is None
    LayerStreamer(model.lm, OffloadPlan((1,), layer_bytes(tiny_config, torch.float32)), torch.device("cpu"))
    gen = Generator(model.lm, SamplingConfig.greedy())
    assert FrameStep(model, gen, capture="auto").capture == "off"
    with pytest.raises(ValueError, match="runs eagerly"):
        FrameStep(model, gen, capture="compile")


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


@requires_cuda
def test_streamed_layers_on_the_gpu_with_prefetch(tiny_config):
    lm = _lm(tiny_config, 3).cuda()
    ref = _run(lm)
    moved = copy.deepcopy(lm)
    for layer in moved.transformer.layers:  # as load_model leaves them: offloaded layers on the host
        layer.cpu()
    moved.transformer.layers[0].cuda()
    plan = OffloadPlan((1, 2), layer_bytes(tiny_config, torch.float32))
    LayerStreamer(moved, plan, torch.device("cuda"))
    got = _run(moved)
    for (t_ref, a_ref), (t, a) in zip(ref, got):
        torch.testing.assert_close(t, t_ref, atol=0, rtol=0)
        torch.testing.assert_close(a, a_ref, atol=0, rtol=0)


def test_automatic_precision():
    from ppx_desktop.engine.model import choose_quant

    config = ModelConfig()
    assert choose_quant(config, torch.bfloat16, 24 * GiB) == "none"
    assert choose_quant(config, torch.bfloat16, 14 * GiB) == "int8"
    assert choose_quant(config, torch.bfloat16, 8 * GiB) == "int4"
    assert choose_quant(config, torch.bfloat16, 8 * GiB, int4=False) == "int8"  # before Ampere
    assert choose_quant(config, torch.bfloat16, 6 * GiB) == "int4"  # a shorter context or offloading completes it
    # Memory is not all: bfloat16 fits a DGX Spark (273 GB/s) but cannot be read in 80 ms there.
    assert choose_quant(config, torch.bfloat16, 100 * GiB, bandwidth=273e9) == "int8"
    assert choose_quant(config, torch.bfloat16, 24 * GiB, bandwidth=1008e9) == "none"  # RTX 4090


def test_automatic_precision_on_the_cpu_is_the_models_own(tiny_model_dir):
    model = load_model(tiny_model_dir, device="cpu", quant="auto")
    assert model.quant == "none" and model.dtype == torch.float32


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_streamed_quantised_layers_give_the_same_outputs(tiny_config, kind):
    """Offloading keeps working with quantised layers (int4: a quarter of bf16's bytes per copy)."""
    from ppx_desktop.engine.quant import quantize_lm

    lm = quantize_lm(_lm(tiny_config, 3), kind)
    ref = _run(lm)
    moved = copy.deepcopy(lm)
    plan = OffloadPlan((1, 2), layer_bytes(tiny_config, torch.float32, kind))
    streamer = LayerStreamer(moved, plan, torch.device("cpu"))
    for slot in streamer.staging:  # garbage in the slots: the copies must bring the real weights
        for t in slot.values():
            t.fill_(7)
    got = _run(moved)
    for (t_ref, a_ref), (t, a) in zip(ref, got):
        assert torch.equal(t, t_ref) and torch.equal(a, a_ref)
    assert layer_bytes(tiny_config, torch.float32, "int4") < layer_bytes(tiny_config, torch.float32, "int8")
