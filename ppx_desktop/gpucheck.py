"""What this machine's GPU can run, in plain language: the first-run check and the app's status.

`check_gpu()` asks PyTorch (imported only when called: it takes seconds) and `nvidia-smi` (if
installed) about the GPU, its driver and free memory, and turns that into a `GpuReport` whose
`verdict` lines say what will and will not work. The thresholds are the memory planner's figures
for the released model (engine/memory.py, GiB, CUDA context included): bfloat16 19.0 GiB, int8
11.4 GiB, int4 7.9 GiB with the full 4-minute context, less with a shorter one.

`accel_mode()` picks how the engine speeds up its step: torch.compile needs Triton (and, on
Linux, a C compiler for Triton's launcher); Windows usually has no Triton, so the engine falls
back to CUDA graphs, or eager on the CPU, instead of failing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import paths

log = logging.getLogger(__name__)

# The released model's memory plan in GiB (engine/memory.py plan_memory: weights, the 3000-frame
# context cache, codec, working memory and the 1 GiB CUDA context allowance), kept as numbers so
# this check stays light. A test holds them to the planner.
BF16_FREE_GIB = 19.01
INT8_FREE_GIB = 11.44
INT4_FREE_GIB = 7.92
# What 1,000 frames of context cost in the plan: the bfloat16 context cache (0.49 GiB) and the
# prefill's attention over it (0.10 GiB). A shorter context saves this much per 1,000 frames.
CONTEXT_GIB_PER_1000_FRAMES = 0.5856
FULL_CONTEXT = 3000
SHORTEST_CONTEXT = 750  # one minute: below this a conversation forgets too soon to be offered
# Ampere (8.0) is the first generation with bfloat16 tensor cores (and the first tinygemm int4
# runs on); older GPUs emulate bfloat16 slowly.
BF16_NATIVE_CAPABILITY = (8, 0)
INT4_CAPABILITY = (8, 0)
REPORT_NAME = "gpu-check.json"

Mode = Literal["bf16", "int8", "int4", "turn-based", "demo"]

MODE_SUMMARY: dict[str, str] = {
    "bf16": "live full-duplex conversation (bfloat16)",
    "int8": "live full-duplex conversation (int8 weights)",
    "int4": "live full-duplex conversation (int4 weights)",
    "turn-based": "turn-based conversation only",
    "demo": "the demo model only",
}


def int4_context(free_gib: float) -> int | None:
    """The longest context (whole 250-frame steps) with which int4 fits in `free_gib`, or None."""
    spare = free_gib - (INT4_FREE_GIB - CONTEXT_GIB_PER_1000_FRAMES * FULL_CONTEXT / 1000)
    frames = int(spare / CONTEXT_GIB_PER_1000_FRAMES * 1000) // 250 * 250
    return min(frames, FULL_CONTEXT) if frames >= SHORTEST_CONTEXT else None


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as `nvidia-smi` reports it (works even when PyTorch cannot use the GPU)."""

    name: str
    driver: str
    total_gb: float
    free_gb: float


@dataclass(frozen=True)
class GpuReport:
    """What the GPU check found, and what it means for the user.

    Args:
        available: PyTorch can run on an NVIDIA GPU.
        mode: the best way to talk with the real model here ("demo": none, only the demo model).
        verdict: plain-language lines, the first a one-line summary.
    """

    available: bool
    name: str | None
    capability: tuple[int, int] | None
    driver: str | None
    total_gb: float | None
    free_gb: float | None
    torch_version: str
    torch_cuda_version: str | None
    compile_supported: bool
    mode: Mode
    verdict: tuple[str, ...]

    def text(self) -> str:
        return "\n".join(self.verdict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- probes --------------------------------------------------------------------------------------


def _c_compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def compile_supported() -> bool:
    """True when torch.compile can build GPU kernels: Triton is installed (and, outside Windows,
    a C compiler, which Triton needs to build its launcher on first use)."""
    if importlib.util.find_spec("triton") is None:
        return False
    # triton-windows ships its own compiler (TinyCC).
    return sys.platform == "win32" or _c_compiler() is not None


def accel_mode(device_type: str) -> Literal["compile", "cuda-graphs", "eager"]:
    """How the engine should speed up its step on `device_type` ("cuda" or "cpu")."""
    if device_type != "cuda":
        return "eager"
    return "compile" if compile_supported() else "cuda-graphs"


def query_nvidia_smi(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> list[SmiGpu] | None:
    """GPUs listed by nvidia-smi, or None when nvidia-smi is missing or fails (no driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    cmd = [exe, "--query-gpu=name,driver_version,memory.total,memory.free", "--format=csv,noheader,nounits"]
    try:
        result = run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("nvidia-smi failed: %s", exc)
        return None
    if result.returncode != 0:
        log.warning("nvidia-smi failed: %s", (result.stderr or result.stdout).strip())
        return None
    return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(output: str) -> list[SmiGpu]:
    gpus = []
    for line in output.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            continue
        name, driver, total_mib, free_mib = fields
        try:
            gpus.append(SmiGpu(name, driver, float(total_mib) / 1024, float(free_mib) / 1024))
        except ValueError:  # "[N/A]" on some virtualised GPUs
            gpus.append(SmiGpu(name, driver, float("nan"), float("nan")))
    return gpus


def check_gpu(device: int = 0) -> GpuReport:
    """Probes PyTorch and nvidia-smi; never raises for a missing or broken GPU, it reports it."""
    import torch

    smi = query_nvidia_smi()
    cuda_version = torch.version.cuda
    probe: dict = {}
    error = None
    if cuda_version:
        try:
            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(device)
                free, total = torch.cuda.mem_get_info(device)
                probe = {
                    "name": props.name,
                    "capability": (props.major, props.minor),
                    "free_gb": free / 2**30,
                    "total_gb": total / 2**30,
                }
        except Exception as exc:  # a driver/runtime mismatch surfaces here as a RuntimeError
            error = f"{type(exc).__name__}: {exc}"
            log.warning("CUDA probe failed: %s", error)
    report = build_report(
        torch_version=torch.__version__,
        torch_cuda_version=cuda_version,
        smi=smi,
        compile_ok=compile_supported(),
        cuda_error=error,
        **probe,
    )
    log.info("GPU check:\n%s", report.text())
    return report


# --- verdict -------------------------------------------------------------------------------------


def build_report(
    *,
    torch_version: str,
    torch_cuda_version: str | None,
    smi: list[SmiGpu] | None,
    compile_ok: bool,
    name: str | None = None,
    capability: tuple[int, int] | None = None,
    free_gb: float | None = None,
    total_gb: float | None = None,
    cuda_error: str | None = None,
) -> GpuReport:
    """Turns probe results into the report (pure: the tests drive it with made-up machines)."""
    smi_gpu = smi[0] if smi else None
    driver = smi_gpu.driver if smi_gpu else None
    available = name is not None and free_gb is not None and total_gb is not None
    lines: list[str] = []

    if not available:
        lines.append("No NVIDIA GPU visible: only the demo model will run.")
        if not torch_cuda_version:
            lines.append(f"This PyTorch ({torch_version}) is a CPU-only build and cannot use a GPU.")
            if smi_gpu:
                lines.append(f"Your {smi_gpu.name} (driver {smi_gpu.driver}) would work with a CUDA build of "
                             "PyTorch: install one as the README describes, then start the app again.")
        elif cuda_error:
            lines.append(f"PyTorch (CUDA {torch_cuda_version}) could not start the GPU: {cuda_error}")
        if torch_cuda_version and not cuda_error:
            if smi_gpu:
                lines.append(f"nvidia-smi sees {smi_gpu.name} with driver {smi_gpu.driver}, but PyTorch "
                             f"(CUDA {torch_cuda_version}) cannot use it: update the NVIDIA driver to one that "
                             f"supports CUDA {torch_cuda_version}.")
            elif smi is None:
                lines.append("No NVIDIA driver found (nvidia-smi is missing): install the NVIDIA driver "
                             "if this computer has an NVIDIA GPU.")
        return GpuReport(False, None, None, driver, None, None, torch_version, torch_cuda_version,
                         compile_ok, "demo", tuple(lines))

    assert free_gb is not None and total_gb is not None
    int4_ok = capability is None or capability >= INT4_CAPABILITY
    short_context = int4_context(free_gb) if int4_ok else None
    if free_gb >= BF16_FREE_GIB:
        mode: Mode = "bf16"
    elif free_gb >= INT8_FREE_GIB:
        mode = "int8"
    elif short_context is not None:
        mode = "int4"
    else:
        mode = "turn-based"
    lines.append(f"{name}: {MODE_SUMMARY[mode]} will run.")
    cap = f"{capability[0]}.{capability[1]}" if capability else "unknown"
    lines.append(f"{free_gb:.1f} GiB of {total_gb:.1f} GiB GPU memory free; compute capability {cap}; "
                 f"driver {driver or 'unknown'}; PyTorch {torch_version} with CUDA {torch_cuda_version}.")
    if mode == "bf16":
        lines.append(f"The full bfloat16 model fits (it needs about {BF16_FREE_GIB:.1f} GiB free).")
    elif mode == "int8":
        lines.append(f"The bfloat16 model needs about {BF16_FREE_GIB:.1f} GiB free, so the app uses int8 weights "
                     f"(about {INT8_FREE_GIB:.1f} GiB): live conversation works, with slightly lower quality.")
    elif mode == "int4":
        context = (f"the full {FULL_CONTEXT}-frame context" if short_context >= FULL_CONTEXT else
                   f"a context of {short_context} frames ({short_context / 750:.1f} minutes in view; "
                   "Settings, Context length)")
        lines.append(f"int8 weights need about {INT8_FREE_GIB:.1f} GiB free, so the app uses int4 weights with "
                     f"{context}: live conversation works; `ppx-desktop quant-check` measures the quality.")
    else:
        need = "int8 weights" if not int4_ok else "int4 weights with a one-minute context"
        smallest = INT8_FREE_GIB if not int4_ok else (INT4_FREE_GIB - CONTEXT_GIB_PER_1000_FRAMES * 2.25)
        lines.append(f"Live conversation needs at least about {smallest:.1f} GiB free ({need}): it will not run. "
                     "Turn-based mode (you speak, then it answers) runs, slower than real time.")
    # Other programs (a browser, a game, another model) often hold the memory that is missing.
    better = next((t for t in (BF16_FREE_GIB, INT8_FREE_GIB, INT4_FREE_GIB) if free_gb < t <= total_gb), None)
    if better is not None and (better != INT4_FREE_GIB or int4_ok):
        target = {BF16_FREE_GIB: "bf16", INT8_FREE_GIB: "int8", INT4_FREE_GIB: "int4"}[better]
        lines.append(f"Other programs use {total_gb - free_gb:.1f} GiB of GPU memory: close them to get "
                     f"{MODE_SUMMARY[target]}{' with the full context' if target == 'int4' else ''}.")
    if capability is not None and capability < BF16_NATIVE_CAPABILITY:
        lines.append(f"This GPU (compute capability {cap}) has no native bfloat16: expect the model to run "
                     "well below real time.")
    if not compile_ok:
        lines.append("torch.compile is not available here (no Triton, as usual on Windows): the engine uses "
                     "CUDA graphs instead; everything works, steps are a little slower.")
    return GpuReport(True, name, capability, driver, total_gb, free_gb, torch_version, torch_cuda_version,
                     compile_ok, mode, tuple(lines))


# --- first run -----------------------------------------------------------------------------------


def saved_report_path() -> Path:
    return paths.data_dir() / REPORT_NAME


def first_run_report() -> GpuReport | None:
    """The GPU report on the app's first start (to show the user), None on later starts.

    The report is saved in the data folder; delete that file to see the check again.
    """
    path = saved_report_path()
    if path.exists():
        return None
    report = check_gpu()
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
