"""Weight-only int8/int4: the kernels' conventions, packing, accuracy, quantise-on-load, refusals."""

from __future__ import annotations

import pytest
import torch
from testkit import FIXTURES, load_golden

from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.generator import Generator, GeneratorOptions
from ppx_desktop.engine.int4 import (
    Int4Layout,
    WeightOnlyInt4Linear,
    dequantize_int4,
    pack_int4,
    quantize_int4,
)
from ppx_desktop.engine.int8 import WeightOnlyInt8Linear, dequantize_int8, quantize_int8
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.model import ModelError, load_model
from ppx_desktop.engine.quant import QuantError, check_quant, quantize_lm
from ppx_desktop.engine.sampling import SamplingConfig

# Stated tolerances on the tiny model: logits within this share of their float32 range (max abs
# error / max abs logit). Measured: int8 about 0.3 % text, 0.5 % audio; int4 (groups of 32-64 on
# 32-64 wide layers, the worst case: the released widths use groups of 128 over 1024-11264) about
# 4-6 %.
REL_TOL = {"int8": 0.02, "int4": 0.12}


@pytest.fixture(scope="module")
def tiny_lm(tiny_config) -> LMModel:
    lm = LMModel(tiny_config.lm, device="meta")
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", device="cpu", dtype=torch.float32, plan_fn=lm_plan)
    return lm.eval()


def teacher_forced_logits(lm):
    tokens = load_golden("lm_teacher_forced.safetensors")["tokens"]
    gen = Generator(lm, SamplingConfig.greedy(), GeneratorOptions(skip_forced_depformer=False,
                                                                  skip_forced_frames=False))
    state = gen.init_state(1)
    text, audio = [], []
    for t in range(tokens.shape[-1]):
        out = gen.step(state, user=tokens[:, 9:17, t:t + 1], agent=tokens[:, 1:9, t:t + 1],
                       text=int(tokens[0, 0, t]), return_logits=True)
        if out is not None:
            text.append(out.text_logits[0])
            audio.append(out.audio_logits[0])
    return torch.stack(text), torch.stack(audio)


@pytest.mark.parametrize("kind, cls", [("int8", WeightOnlyInt8Linear), ("int4", WeightOnlyInt4Linear)])
def test_quantised_logits_stay_close_to_float32(tiny_lm, kind, cls):
    ref_text, ref_audio = teacher_forced_logits(tiny_lm)
    q = quantize_lm(tiny_lm, kind)
    attn = q.transformer.layers[0].self_attn
    assert isinstance(q.text_linear, cls) and isinstance(attn.in_proj, cls) and not hasattr(attn, "in_proj_weight")
    assert isinstance(q.depformer.layers[0].self_attn.in_proj, cls) and q.depformer.layers[0].self_attn.in_proj.steps
    text, audio = teacher_forced_logits(q)
    text_err = (text - ref_text).abs().max() / ref_text.abs().max()
    audio_err = (audio - ref_audio).abs().max() / ref_audio.abs().max()
    assert 0 < text_err < REL_TOL[kind] and 0 < audio_err < REL_TOL[kind], (text_err, audio_err)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_quantises_against_the_stored_scale(dtype):
    w = torch.randn(16, 64) * torch.arange(1, 17)[:, None]  # rows of very different scales
    q, scale = quantize_int8(w, dtype)
    assert q.dtype == torch.int8 and scale.dtype == dtype and scale.shape == (16,)
    assert q.abs().amax(dim=1).ge(126).all()  # each row uses the full range
    # The error is the int8 rounding alone: the scale the kernel reads is the one quantised against.
    assert ((dequantize_int8(q, scale) - w).abs() <= scale.float()[:, None] / 2 + 1e-6).all()


def test_int8_layers_of_widths_off_the_kernels_block_read_nothing_past_their_rows():
    """The CPU kernel with bfloat16 activations reads K in blocks of 16: the tiny models' depformer
    FFN (K = 88) read past each row into the memory behind it (NaN here). Padded, it reads none."""
    w = torch.randn(32, 88)
    m = WeightOnlyInt8Linear(88, 32, dtype=torch.bfloat16)
    m.load_state_dict(WeightOnlyInt8Linear.quantize(w, 0, torch.bfloat16), assign=True)
    assert m.weight.shape == (32, 96) and not m.weight[:, 88:].any()
    behind = torch.full((88 + 64,), float("nan"), dtype=torch.bfloat16)
    x = behind[:88].copy_(torch.randn(88)).view(1, 1, 88)
    ref = x.float().view(1, 88) @ dequantize_int8(m.weight[:, :88], m.scales).T
    torch.testing.assert_close(m(x).float().view(1, 32), ref, rtol=2e-2, atol=2e-2)


def test_int8_module_equals_its_dequantised_weight():
    w = torch.randn(48, 64)
    m = WeightOnlyInt8Linear(64, 48, dtype=torch.float32)
    m.load_state_dict(WeightOnlyInt8Linear.quantize(w, 0, torch.float32), assign=True)
    x = torch.randn(2, 3, 64)
    ref = x @ dequantize_int8(m.weight, m.scales).T
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_int4_kernel_convention_and_packing_round_trip():
    """The CPU kernel applied to the identity returns the weights our dequantisation describes:
    `(q - 8) * scale + zero` per group, packed codes intact."""
    torch.manual_seed(0)
    w = torch.randn(32, 256)
    q, sz, layout = quantize_int4(w, torch.float32)
    assert layout.group == 128 and q.dtype == torch.uint8 and int(q.max()) <= 15 and sz.shape == (2, 32, 2)
    packed = pack_int4(q, layout, "cpu")
    out = torch.ops.aten._weight_int4pack_mm_for_cpu(torch.eye(256), packed, layout.group, sz)  # = W.T
    torch.testing.assert_close(out.T, dequantize_int4(q, sz, layout), rtol=0, atol=1e-5)


def test_int4_chunked_cpu_packing_equals_one_piece(monkeypatch):
    import ppx_desktop.engine.int4 as int4

    q, _, layout = quantize_int4(torch.randn(160, 64), torch.float32)
    whole = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), layout.inner_k_tiles)
    monkeypatch.setattr(int4, "_CPU_CHUNK_ELEMENTS", 64 * 64)  # 64-row chunks, the last one partial
    assert torch.equal(pack_int4(q, layout, "cpu"), whole)


def test_int4_pads_widths_that_are_not_whole_groups():
    layout = Int4Layout.for_features(88)  # the tiny depformer's FFN width
    assert (layout.group, layout.padded) == (32, 96)
    w = torch.randn(32, 88)
    m = WeightOnlyInt4Linear(88, 32, dtype=torch.float32)
    m.load_state_dict(WeightOnlyInt4Linear.quantize(w, 0, torch.float32), assign=True)
    x = torch.randn(5, 88)
    q, sz, layout = quantize_int4(w, torch.float32)
    torch.testing.assert_close(m(x), x @ dequantize_int4(q, sz, layout).T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weights", ["gauss", "heavy-tailed"])
def test_int4_parameter_search_beats_min_max(weights):
    torch.manual_seed(1)
    w = torch.randn(256, 1024) if weights == "gauss" else torch.distributions.StudentT(3.0).sample((256, 1024))

    def mse(search):
        q, sz, layout = quantize_int4(w, torch.bfloat16, search=search)
        return float(((dequantize_int4(q, sz, layout) - w) ** 2).mean())

    # Measured: 12.8 % lower on Gaussian weights, 15 % on heavy-tailed ones.
    assert mse(True) < 0.9 * mse(False)


def test_per_step_int4_weights_pick_their_step():
    steps, n, k = 3, 32, 64
    w = torch.randn(steps * n, k)
    m = WeightOnlyInt4Linear(k, n, steps=steps, dtype=torch.float32)
    m.load_state_dict(WeightOnlyInt4Linear.quantize(w, steps, torch.float32), assign=True)
    x = torch.randn(1, k)
    for s in range(steps):
        q, sz, layout = quantize_int4(w[s * n:(s + 1) * n], torch.float32)
        torch.testing.assert_close(m(x, s), x @ dequantize_int4(q, sz, layout).T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_load_model_quantises_while_loading(tiny_model_dir, kind):
    model = load_model(tiny_model_dir, device="cpu", quant=kind)
    cls = {"int8": WeightOnlyInt8Linear, "int4": WeightOnlyInt4Linear}[kind]
    assert model.quant == kind and isinstance(model.lm.transformer.layers[0].self_attn.in_proj, cls)
    assert isinstance(model.lm.depformer.layers[0].gating[3].linear_in, cls)
    assert model.lm.emb[0].weight.dtype == torch.float32  # embeddings stay in the model's dtype
    gen = Generator(model.lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    for t in range(4):
        out = gen.step(state, user=torch.full((1, 8, 1), t))
    assert out.tokens.shape == (1, 17, 1)


def test_fp8_is_gone_with_a_pointer_to_int8(tiny_model_dir):
    with pytest.raises(ModelError, match="no longer offered.*--quant int8"):
        load_model(tiny_model_dir, device="cpu", quant="fp8")


def test_int4_is_refused_before_ampere_naming_int8(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    with pytest.raises(QuantError, match="compute capability 8.0.*7.5.*--quant int8"):
        check_quant("int4", torch.device("cuda"))
    check_quant("int8", torch.device("cuda"))
