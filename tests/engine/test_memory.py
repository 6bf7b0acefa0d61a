"""The memory plan against what a whole session really allocates (released size, meta device)."""

from __future__ import annotations

import pytest
import torch

from ppx_desktop import gpucheck
from ppx_desktop.engine.config import ModelConfig
from ppx_desktop.engine.memory import GiB, fitting_context, plan_memory
from ppx_desktop.engine.memtrack import LiveBytes, round_allocation


def test_tracker_follows_storages_pools_and_pauses():
    tracker = LiveBytes("meta")
    with tracker:
        a = torch.empty(20 * 2**20, dtype=torch.uint8, device="meta")
        view = a[:10]  # shares the storage: nothing new
        assert tracker.live == 20 * 2**20
        with tracker.pool("graphs"):
            t = torch.empty(2**20, device="meta")  # 4 MiB, freed inside the capture
            del t
            out = torch.empty(2**20, device="meta")  # reuses the freed block: the pool stays at 4 MiB
        assert tracker.pools == {"graphs": 4 * 2**20} and tracker.live == 24 * 2**20
        with tracker.paused():
            torch.empty(2**30, device="meta")  # a template: never counted
        del a, view
        assert tracker.live == 4 * 2**20 and tracker.peak == 24 * 2**20
        tracker.release_pool("graphs")
        assert tracker.live == 0
        cpu = torch.empty(2**20)  # other devices are not followed
        assert tracker.live == 0
    del out, cpu


def test_allocator_rounding():
    assert round_allocation(1) == 512 and round_allocation(513) == 1024
    assert round_allocation(10 * 2**20) == 10 * 2**20  # whole 2 MiB pages from 10 MiB up
    assert round_allocation(10 * 2**20 + 1) == 12 * 2**20


def test_planner_targets_at_the_released_context():
    """bf16 live duplex within 23 GiB and int8 within 11.5 GiB at the full 3000 frames (CUDA
    context allowance included). int4 misses its 7.5 GiB target by 0.42 GiB at 3000 frames; a
    2250-frame context (3 minutes) fits it."""
    config = ModelConfig()
    bf16, int8, int4 = (plan_memory(config, p) for p in ("bfloat16", "int8", "int4"))
    assert bf16.cuda_context == GiB and bf16.context == 3000
    assert bf16.total_gib <= 23.0 and int8.total_gib <= 11.5
    assert 7.5 < int4.total_gib < 8.0
    assert fitting_context(config, "int4", int(7.5 * GiB)) == 2250
    assert plan_memory(config, "int4", 2250).total_gib <= 7.5
    # The context is the knob: the cache (0.49 GiB per 1000 frames in bfloat16) and the prefill over it.
    per_1000 = (bf16.total - plan_memory(config, "bfloat16", 2000).total) / GiB
    assert per_1000 == pytest.approx(gpucheck.CONTEXT_GIB_PER_1000_FRAMES, abs=0.001)
    assert (bf16.kv_cache - plan_memory(config, "bfloat16", 2000).kv_cache) / GiB == pytest.approx(0.49, abs=0.02)


def test_gpucheck_thresholds_are_the_planners():
    config = ModelConfig()
    assert plan_memory(config, "bfloat16").total_gib == pytest.approx(gpucheck.BF16_FREE_GIB, abs=0.01)
    assert plan_memory(config, "int8").total_gib == pytest.approx(gpucheck.INT8_FREE_GIB, abs=0.01)
    assert plan_memory(config, "int4").total_gib == pytest.approx(gpucheck.INT4_FREE_GIB, abs=0.01)
    for free in (7.0, 7.3, 7.6):
        assert gpucheck.int4_context(free) == fitting_context(config, "int4", int(free * GiB))


@pytest.mark.slow
@pytest.mark.parametrize("precision, quant", [("bfloat16", "none"), ("int8", "int8"), ("int4", "int4")])
def test_measured_session_peak_fits_the_plan(precision, quant):
    """Load, first conversation (prompts, warm-up, capture of 4 graphs), 20 frames, a second
    conversation, a custom voice: the released model on the meta device, every allocation
    followed. Measured here: bf16 17.73 GiB against 17.87 planned (device part), int8 10.15 /
    10.30, int4 6.64 / 6.78."""
    from ppx_desktop.session.memoryflow import run_memory_flow

    report = run_memory_flow(ModelConfig(), torch.device("meta"), torch.bfloat16, quant, frames=20,
                             voice_seconds=1.0, custom_voice_seconds=2.0)
    planned = report.plan.device_bytes
    assert report.peak <= planned <= 1.10 * report.peak, (report.peak / GiB, planned / GiB)
    phases = {m.label: m for m in report.marks}
    # A second conversation and a voice need no lasting memory: the state is reused in place.
    assert phases["second conversation"].live == phases["20 frames"].live
    assert phases["custom voice"].live == phases["20 frames"].live
    # One shared pool for the four graphs, holding one frame's activations (MBs, not GiBs).
    assert len(report.graph_pools) == 1 and sum(report.graph_pools.values()) < 64 * 2**20
