"""The CUDA-only pieces of the run, kept in one place: device facts, the process's memory outside
PyTorch's allocator, a per-process memory cap, and reading copy/compute overlap from a profiler
timeline (pure Python, tested on the CPU with a made-up timeline)."""

from __future__ import annotations

import contextlib
import os
import subprocess

import torch

GiB = 2**30
PER_PROCESS = "nvidia-smi, this process"


def _nvidia_smi(*query: str) -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def driver_version() -> str:
    lines = _nvidia_smi("--query-gpu=driver_version")
    if lines:
        return lines[0]
    try:
        v = torch._C._cuda_getDriverVersion()  # the CUDA version the driver supports, e.g. 12040
        return f"unknown (driver supports CUDA {v // 1000}.{v % 1000 // 10})"
    except (AttributeError, RuntimeError):
        return "unknown"


def environment(device: torch.device) -> dict:
    from ppx_desktop.engine.model import device_bandwidth

    props = torch.cuda.get_device_properties(device)
    free, total = torch.cuda.mem_get_info(device)
    peak = device_bandwidth(device)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count, "memory_gib": round(total / GiB, 2),
            "free_gib": round(free / GiB, 2), "cuda_runtime": torch.version.cuda, "driver": driver_version(),
            "cudnn": torch.backends.cudnn.version(), "peak_bandwidth_gbs": round(peak / 1e9, 1) if peak else None,
            "sdp_backends": {name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                             for name in ("flash", "mem_efficient", "math", "cudnn")
                             if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")}}


def outside_allocator(device: torch.device) -> tuple[int, str]:
    """Bytes this process holds on the GPU beyond PyTorch's reserved pool (CUDA context, library
    handles), and how that was read: nvidia-smi's per-process figure, or, where the container
    hides processes, the device's used memory (which then includes other processes)."""
    reserved = torch.cuda.memory_reserved(device)
    for line in _nvidia_smi("--query-compute-apps=pid,used_memory"):
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(float(used)) * 2**20 - reserved, PER_PROCESS
    free, total = torch.cuda.mem_get_info(device)
    return total - free - reserved, "device used memory (includes other processes)"


@contextlib.contextmanager
def memory_cap(device: torch.device, limit: int):
    """Caps PyTorch's allocator at `limit` bytes (per-process memory fraction); yields the cap
    applied, or None where the GPU holds less than `limit` anyway."""
    total = torch.cuda.get_device_properties(device).total_memory
    if limit >= total:
        yield None
        return
    torch.cuda.set_per_process_memory_fraction(limit / total, device)
    try:
        yield limit
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)


# --- copy/compute overlap in a profiler timeline (Chrome trace format) ------------------------

def _merged(intervals) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


def _length(intervals) -> float:
    return sum(b - a for a, b in intervals)


def _intersection(a, b) -> float:
    """Total length where two merged interval lists overlap."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def copy_compute_overlap(trace: dict) -> dict:
    """How much of the host-to-device copying ran while kernels ran on another stream.

    `ratio` = overlapped time / min(copy time, kernel time): 1 when the shorter of the two is
    entirely hidden behind the other, 0 when copies and compute take turns."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", "")]
    overlap = 0.0
    for stream in {c.get("tid") for c in copies}:
        mine = _merged((c["ts"], c["ts"] + c["dur"]) for c in copies if c.get("tid") == stream)
        others = _merged((k["ts"], k["ts"] + k["dur"]) for k in kernels if k.get("tid") != stream)
        overlap += _intersection(mine, others)
    copy_us = _length(_merged((c["ts"], c["ts"] + c["dur"]) for c in copies))
    kernel_us = _length(_merged((k["ts"], k["ts"] + k["dur"]) for k in kernels))
    shorter = min(copy_us, kernel_us)
    return {"copies": len(copies), "copy_ms": round(copy_us / 1e3, 3), "kernels": len(kernels),
            "kernel_ms": round(kernel_us / 1e3, 3), "overlap_ms": round(overlap / 1e3, 3),
            "ratio": round(overlap / shorter, 3) if shorter > 0 else 0.0,
            "copy_streams": sorted({str(c.get("tid")) for c in copies}),
            "kernel_streams": sorted({str(k.get("tid")) for k in kernels})}
