"""The CUDA branches of the acceptance checks against a stand-in for torch.cuda's queries and
switches: their logic and what they report. What they measure needs a GPU (the run itself)."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from acceptance import report  # noqa: E402
from acceptance.context import DRY, Run  # noqa: E402

GiB = 2**30


@pytest.fixture
def cuda_run(monkeypatch, tmp_path):
    """A run whose CUDA branches execute on the CPU: a 24 GiB sm 8.6 card that answers queries."""
    import acceptance.cuda as acuda

    import ppx_desktop.engine.graphs as graphs

    calls = {"sync_debug": [], "fraction": [], "reserved": 0}
    props = types.SimpleNamespace(name="Stand-in GPU", major=8, minor=6, multi_processor_count=84,
                                  total_memory=24 * GiB, memory_clock_rate=10_501_000, memory_bus_width=384)
    for name, fn in {
        "synchronize": lambda *a: None, "reset_peak_memory_stats": lambda *a: None,
        "empty_cache": lambda: calls.update(reserved=0),  # what the flow held goes back to the driver
        "set_sync_debug_mode": lambda mode: calls["sync_debug"].append(mode),
        "set_per_process_memory_fraction": lambda f, *a: calls["fraction"].append(round(f, 4)),
        "get_device_properties": lambda *a: props, "mem_get_info": lambda *a: (20 * GiB, 24 * GiB),
        "memory_reserved": lambda *a: calls["reserved"], "max_memory_reserved": lambda *a: calls["reserved"],
        "max_memory_allocated": lambda *a: calls["reserved"], "get_device_name": lambda *a: props.name,
    }.items():
        monkeypatch.setattr(torch.cuda, name, fn)

    def smi(query, *_):  # this process: what the allocator holds plus a 700 MiB CUDA context
        return ["550.54.15"] if "driver" in query else [f"{os.getpid()}, {calls['reserved'] // 2**20 + 700}"]

    monkeypatch.setattr(acuda, "_nvidia_smi", smi)

    class StandInGraphs(graphs.EagerGraphs):
        def __init__(self, device=None):
            super().__init__()

    monkeypatch.setattr(graphs, "CudaGraphs", StandInGraphs)
    run = Run(tmp_path, dry_run=True)
    run.cuda = True
    run.scale = dataclasses.replace(DRY, replays=5, codec_frames=10, offload_frames=4)
    return run, calls


def test_environment_reads_the_device_and_refuses_int4_before_ampere(cuda_run, monkeypatch):
    import acceptance.environment as env

    run, _ = cuda_run
    monkeypatch.setattr(env, "int4_unavailable", lambda run: "int4 weights need ... 7.5. Use --quant int8 instead.")
    parts = report.Parts(cuda=True)
    env.check_environment(run, parts)
    got = {p.name: p for p in parts.parts}
    assert got["CUDA device"].status == report.PASS and got["CUDA device"].values["driver"] == "550.54.15"
    assert got["CUDA device"].values["peak_bandwidth_gbs"] == pytest.approx(1008.1, abs=0.1)  # an RTX 4090's
    assert got["int8 kernel"].status == report.PASS and got["int8 kernel"].values["rel_err"] < 1e-2
    assert got["int4 kernel"].status == report.NEEDS_CUDA and "int8" in got["int4 kernel"].values["reason"]
    assert "Stand-in GPU (sm 8.6)" in parts.summary and "int4 refused" in parts.summary


def test_memory_judges_the_reserved_peak_caps_the_allocator_and_reports_out_of_memory(cuda_run, monkeypatch):
    import acceptance.memory as memory

    from ppx_desktop.engine.memory import plan_memory

    run, calls = cuda_run
    monkeypatch.setattr(memory, "int4_unavailable", lambda run: None)

    def flow(run, precision):
        plan = plan_memory(run.config, precision)
        if precision == "int4" and calls["fraction"] and calls["fraction"][-1] < 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        calls["reserved"] = int(plan.device_bytes * (1.2 if precision == "int8" else 0.9))  # int8 over its plan
        return types.SimpleNamespace(peak=calls["reserved"], plan=plan)

    monkeypatch.setattr(memory, "_flow", flow)
    parts = report.Parts(cuda=True)
    memory.check_memory(run, parts)
    status = {p.name: p.status for p in parts.parts}
    assert status == {"bfloat16 session": report.PASS, "int8 session": report.FAIL, "int4 session": report.PASS,
                      "bfloat16 capped at 24 GiB": report.PASS, "int8 capped at 12 GiB": report.PASS,
                      "int4 capped at 8 GiB": report.FAIL}
    # The allocator gets the card's memory less the 1 GiB context allowance, and the whole GPU back after.
    assert calls["fraction"] == [round(23 / 24, 4), 1.0, round(11 / 24, 4), 1.0, round(7 / 24, 4), 1.0]
    oom = parts.parts[-1].values
    assert "out of memory" in oom["out_of_memory"] and "int4 capped at 8 GiB: OUT OF MEMORY" in parts.summary
    session = parts.parts[0].values
    assert session["outside_allocator_read_by"].startswith("nvidia-smi") and 0 < session["outside_allocator_gib"] < 1


def test_capture_replays_run_under_sync_debug_mode_error(cuda_run):
    from acceptance.capture import check_capture

    run, calls = cuda_run
    parts = report.Parts(cuda=True)
    check_capture(run, parts)
    assert calls["sync_debug"] == ["error", "default"]
    assert [p.status for p in parts.parts] == [report.PASS, report.PASS]
    assert "sync debug mode 'error'" in parts.parts[1].criterion and parts.parts[1].values["replays"] == 5


def test_offload_overlap_fails_on_a_timeline_without_copies(cuda_run):
    from acceptance.offload import check_offload

    run, _ = cuda_run
    parts = report.Parts(cuda=True)
    with pytest.warns(UserWarning, match="CUDA is not available"):  # the profiler records the CPU alone
        check_offload(run, parts)
    tokens, overlap = parts.parts
    assert tokens.status == report.PASS and tokens.values["mismatched_frames"] == []
    assert overlap.status == report.FAIL and overlap.values["copies"] == 0
    assert (run.out / "offload_trace.json").is_file()


def test_codec_tries_tf32_as_set_then_says_which_was_needed(cuda_run):
    from acceptance.codec import check_codec

    run, _ = cuda_run
    parts = report.Parts(cuda=True)
    check_codec(run, parts)
    (codes,) = parts.parts
    assert codes.status == report.PASS and codes.values["verdict"] == "with PyTorch's TF32 defaults"
    assert codes.values["with_defaults"]["identical_frames"] == 1.0 and "tf32_disabled" not in codes.values
