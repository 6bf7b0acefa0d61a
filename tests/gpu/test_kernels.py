"""Weight-only kernels on the GPU against the CPU ones: the int4 CUDA packing has only ever been
written, never read by tinygemm, until this runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ppx_desktop.engine.int4 import WeightOnlyInt4Linear, dequantize_int4, pack_int4, quantize_int4
from ppx_desktop.engine.int8 import WeightOnlyInt8Linear, dequantize_int8, quantize_int8
from ppx_desktop.engine.quant import INT4_MIN_CAPABILITY, QuantError, available_quants, check_quant

pytestmark = pytest.mark.cuda

# (out, in) features of released layers: temporal attention out, FFN out (rows cut), the audio
# heads and the depformer FFN out; and a tiny width whose K is padded to a whole group.
SHAPES = [pytest.param(4096, 4096, id="attention-out"), pytest.param(1024, 11264, id="ffn-out"),
          pytest.param(2048, 1024, id="audio-head"), pytest.param(1024, 2816, id="depformer-ffn-out"),
          pytest.param(64, 40, id="tiny-padded")]


def _weights(n: int, k: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=gen) * k**-0.5).to(torch.bfloat16)


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float().cpu() - ref.float().cpu()).norm() / ref.float().cpu().norm())


def test_int4_cuda_packing_holds_the_weights_the_cpu_layout_holds(needs_int4):
    """tinygemm times the identity is the dequantised weight: the CUDA packing (nibble order, K
    tiles) and the scales-and-zeros convention are the ones the CPU kernel was checked with."""
    w = _weights(256, 1024)
    q, sz, layout = quantize_int4(w, torch.bfloat16)
    eye = torch.eye(layout.padded, dtype=torch.bfloat16)
    out_cuda = torch.ops.aten._weight_int4pack_mm(eye.cuda(), pack_int4(q.cuda(), layout, "cuda"), layout.group,
                                                  sz.cuda())
    out_cpu = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, pack_int4(q, layout, "cpu"), layout.group, sz)
    deq = dequantize_int4(q, sz, layout)
    torch.testing.assert_close(out_cuda.float().cpu().T, deq, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(out_cuda.float().cpu(), out_cpu.float(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("n, k", SHAPES)
def test_int4_cuda_kernel_matches_the_cpu_kernel(needs_int4, n, k):
    w = _weights(n, k)
    q, sz, layout = quantize_int4(w, torch.bfloat16)
    x = torch.randn(4, k, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    xp = F.pad(x, (0, layout.padded - k))
    y_cuda = torch.ops.aten._weight_int4pack_mm(xp.cuda(), pack_int4(q.cuda(), layout, "cuda"), layout.group,
                                                sz.cuda())
    y_cpu = torch.ops.aten._weight_int4pack_mm_for_cpu(xp, pack_int4(q, layout, "cpu"), layout.group, sz)
    ref = x.float() @ dequantize_int4(q, sz, layout).T
    assert _rel_err(y_cuda, ref) < 1e-2 and _rel_err(y_cuda, y_cpu) < 1e-2


def test_int4_layers_quantised_on_the_gpu_equal_those_quantised_on_the_cpu(needs_int4):
    """What `random_model` and a real load do on a GPU (quantise there, per-step weights stacked)
    gives the layer the CPU gives, up to near-ties of the parameter search."""
    steps, n, k = 2, 1024, 1024
    w = _weights(steps * n, k)
    gpu = WeightOnlyInt4Linear(k, n, steps=steps, kind="cuda", device="cuda", dtype=torch.bfloat16)
    gpu.load_state_dict(WeightOnlyInt4Linear.quantize(w.cuda(), steps, torch.bfloat16, kind="cuda"))
    cpu = WeightOnlyInt4Linear(k, n, steps=steps, kind="cpu", dtype=torch.bfloat16)
    cpu.load_state_dict(WeightOnlyInt4Linear.quantize(w, steps, torch.bfloat16, kind="cpu"))
    x = torch.randn(1, 1, k, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    for step in range(steps):
        assert _rel_err(gpu(x.cuda(), step), cpu(x, step)) < 1e-2
    q_gpu, _, _ = quantize_int4(w[:n].cuda(), torch.bfloat16)
    q_cpu, _, _ = quantize_int4(w[:n], torch.bfloat16)
    assert float((q_gpu.cpu() == q_cpu).float().mean()) > 0.99  # float sums in another order: rare near-ties


@pytest.mark.parametrize("n, k", [s for s in SHAPES if s.id != "tiny-padded"])
def test_int8_cuda_kernel_matches_its_dequantised_weight(n, k):
    w = _weights(n, k)
    q, scales = quantize_int8(w.cuda(), torch.bfloat16)
    q_cpu, scales_cpu = quantize_int8(w, torch.bfloat16)
    assert torch.equal(q.cpu(), q_cpu) and torch.equal(scales.cpu(), scales_cpu)  # IEEE ops: identical
    x = torch.randn(4, k, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    y = torch._weight_int8pack_mm(x.cuda(), q, scales)
    ref = x.float() @ dequantize_int8(q_cpu, scales_cpu).T
    assert _rel_err(y, ref) < 1e-2
    layer = WeightOnlyInt8Linear(k, n, device="cuda", dtype=torch.bfloat16)
    layer.load_state_dict({"weight": q, "scales": scales})
    assert _rel_err(layer(x.cuda()), ref) < 1e-2


def test_int4_is_offered_exactly_where_tinygemm_runs():
    device = torch.device("cuda")
    capable = torch.cuda.get_device_capability(device) >= INT4_MIN_CAPABILITY
    assert ("int4" in available_quants(device)) == capable
    if capable:
        check_quant("int4", device)
    else:
        with pytest.raises(QuantError, match="int8"):
            check_quant("int4", device)
