"""Layers streamed from pinned host memory on a side stream, and the Mimi codec on the GPU."""

from __future__ import annotations

import pytest
import torch
from gpukit import on_cuda
from testkit import load_golden

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.offload import LayerStreamer, OffloadPlan, layer_bytes
from ppx_desktop.engine.sampling import SamplingConfig

pytestmark = pytest.mark.cuda


def _logits(lm, frames: int = 20):
    gen = Generator(lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    out = []
    for t in range(frames):
        step = gen.step(state, user=torch.full((1, 8, 1), t % 5, device="cuda"), return_logits=True)
        if step is not None:
            out.append((step.text_logits.cpu(), step.audio_logits.cpu()))
    return out


def test_streamed_layers_give_the_same_logits_as_resident_ones(tiny_cpu):
    model = on_cuda(tiny_cpu)
    ref = _logits(model.lm)
    layers = model.config.lm.num_layers
    plan = OffloadPlan(tuple(range(layers)), layer_bytes(model.config, torch.float32))
    for i in plan.layers:
        model.lm.transformer.layers[i].to("cpu")  # what the loader does with offloaded layers
    streamer = LayerStreamer(model.lm, plan, torch.device("cuda"))
    assert all(t.is_pinned() for host in streamer.host for t in host.values())
    got = _logits(model.lm)
    for (t_ref, a_ref), (t, a) in zip(ref, got, strict=True):
        assert torch.equal(t, t_ref) and torch.equal(a, a_ref)
    # Each layer once per model call, prefetched on the side stream; after the last call the first
    # layer is already on its way for the next one.
    assert layers * len(ref) <= streamer.copies <= layers * len(ref) + 1


def test_mimi_codes_on_the_gpu_match_the_reference_away_from_near_ties(tiny_cpu):
    """The reference's streaming codes, with TF32 off. Where two centroids are nearly equidistant
    (the golden's margin below 1e-4) float noise may pick the other; the frame's later levels then
    quantise another residual, so each frame is compared up to its first near-tie."""
    golden = load_golden("mimi_golden.safetensors")
    mimi = on_cuda(tiny_cpu).mimi
    wav = golden["waveform"].cuda()
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        state = mimi.init_encoder_state(1)
        codes = torch.cat([mimi.encode_step(wav[..., i:i + FRAME_SIZE], state)
                           for i in range(0, wav.shape[-1], FRAME_SIZE)], dim=-1)[0].cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
    ref, margin = golden["codes_streaming"][0], golden["code_margin"][0]
    compared = 0
    for f in range(ref.shape[1]):
        for level in range(ref.shape[0]):
            if margin[level, f] < 1e-4:
                break
            assert codes[level, f] == ref[level, f], (f, level)
            compared += 1
    assert compared >= 200  # of 320: the comparison is not vacuous
