"""Check 7: a whole session's peak GPU memory against the memory plan, then the same session with
the process capped at what a 24, 12 and 8 GB card leaves (bfloat16, int8, int4): no out-of-memory.

The session is `session/memoryflow.py`'s: load (random weights, built on the device), a first
conversation with warm-up and capture of every graph, frames, a second conversation with another
voice, a custom voice. On a GPU the graphs are real and the truth is `torch.cuda`'s peak reserved
memory; in the dry run the live-bytes tracker measures the same flow of the tiny model on the CPU.
"""

from __future__ import annotations

import contextlib

import torch

from ppx_desktop.engine.memory import CUDA_CONTEXT, PRECISIONS, GiB

from .report import gib
from .speed import int4_unavailable

CAPS = (("bfloat16", 24), ("int8", 12), ("int4", 8))  # GiB: the cards each precision is for
FLOW = dict(voice_seconds=1.0, custom_voice_seconds=2.0)


def _flow(run, precision: str):
    from ppx_desktop.session.memoryflow import run_memory_flow

    dtype, quant = PRECISIONS[precision]
    graphs = None
    if run.cuda:
        from ppx_desktop.engine.graphs import CudaGraphs

        graphs = CudaGraphs(run.device)
    try:
        return run_memory_flow(run.config, run.device, dtype, quant, frames=run.scale.flow_frames, graphs=graphs,
                               **FLOW)
    finally:
        if graphs is not None:
            graphs.release()


def _measure(run, precision: str, cap_gib: int | None = None) -> dict:
    """One session; on CUDA under an optional cap. Raises torch.cuda.OutOfMemoryError."""
    if not run.cuda:
        report = _flow(run, precision)
        return {"tracked_peak_gib": round(report.peak / GiB, 4), "planned_device_gib": round(
            report.plan.device_bytes / GiB, 4), "fits": report.peak <= report.plan.device_bytes,
            "phases": report.to_dict()["phases"]}
    from .cuda import PER_PROCESS, memory_cap, outside_allocator

    run.free()
    torch.cuda.reset_peak_memory_stats(run.device)
    before = torch.cuda.memory_reserved(run.device)
    limit = None if cap_gib is None else cap_gib * GiB - CUDA_CONTEXT
    with memory_cap(run.device, limit) if limit is not None else contextlib.nullcontext() as applied:
        report = _flow(run, precision)
        reserved = torch.cuda.max_memory_reserved(run.device) - before
        allocated = torch.cuda.max_memory_allocated(run.device)
        outside, how = outside_allocator(run.device)
    values = {"peak_reserved_gib": round(reserved / GiB, 3), "peak_allocated_gib": round(allocated / GiB, 3),
              "planned_device_gib": round(report.plan.device_bytes / GiB, 3),
              "planned_total_gib": round(report.plan.total / GiB, 3), "tracker_peak_gib": round(report.peak / GiB, 3),
              "outside_allocator_gib": round(outside / GiB, 3), "outside_allocator_read_by": how,
              "reserved_before_gib": round(before / GiB, 3),
              # Judged only when read per process: the device's used memory also counts other programs.
              "fits": reserved <= report.plan.device_bytes and (outside <= CUDA_CONTEXT or how != PER_PROCESS)}
    if cap_gib is not None:
        values["allocator_cap_gib"] = round(applied / GiB, 3) if applied else None
        if applied is None:
            values["note"] = f"the GPU holds less than {cap_gib} GiB: ran with all of it"
    return values


def check_memory(run, parts) -> None:
    run.models.clear()  # the session must have the GPU to itself
    summary = []
    for precision in ("bfloat16", "int8", "int4"):
        measured = ("(torch.cuda.max_memory_reserved) within the plan's allocations; memory outside the allocator "
                    "within its 1 GiB CUDA context allowance (where nvidia-smi shows this process)" if run.cuda else
                    "(live-bytes tracker) within the plan's allocations")
        criterion = f"peak over load, warm-up and capture, frames, a second conversation and a custom voice {measured}"
        reason = int4_unavailable(run) if precision == "int4" and run.cuda else None
        if reason is not None:
            parts.needs_cuda(f"{precision} session", criterion + " (needs compute capability 8.0+)", reason=reason)
            continue
        with parts.guard(f"{precision} session", criterion):
            v = _measure(run, precision)
            parts.judge(f"{precision} session", criterion, v.pop("fits"), **v)
            peak = v.get("peak_reserved_gib", v.get("tracked_peak_gib"))
            summary.append(f"{precision} {gib(peak)} of {gib(v['planned_device_gib'])}")
    for precision, cap in CAPS:
        criterion = (f"the same session with the allocator capped at {cap} GiB less the 1 GiB context allowance "
                     "(per-process memory fraction): no out-of-memory")
        if not run.cuda:
            parts.needs_cuda(f"{precision} capped at {cap} GiB", criterion)
            continue
        reason = int4_unavailable(run) if precision == "int4" else None
        if reason is not None:
            parts.needs_cuda(f"{precision} capped at {cap} GiB", criterion + " (needs compute capability 8.0+)",
                             reason=reason)
            continue
        with parts.guard(f"{precision} capped at {cap} GiB", criterion):
            try:
                v = _measure(run, precision, cap)
                v.pop("fits")
                parts.judge(f"{precision} capped at {cap} GiB", criterion, True, **v)
                summary.append(f"{precision} capped at {cap} GiB: no OOM")
            except torch.cuda.OutOfMemoryError as exc:
                parts.judge(f"{precision} capped at {cap} GiB", criterion, False, out_of_memory=str(exc)[:400])
                summary.append(f"{precision} capped at {cap} GiB: OUT OF MEMORY")
    parts.summary = "peak/planned: " + "; ".join(summary)
