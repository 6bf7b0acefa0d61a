"""Checks 1 and 2: what the machine is (CUDA, driver, GPU, free memory, which weight-only kernels
run, Triton), and the `tests/gpu` tier of pytest tests, run in a child process."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import torch

from .speed import int4_unavailable


def triton_version() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return None
    for dist in ("triton", "pytorch-triton", "triton-windows"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "present (version unknown)"


def probe_kernel(kind: str, device: torch.device) -> dict:
    """One quantised layer through the module the model uses, against its dequantised weight."""
    from ppx_desktop.engine.int4 import WeightOnlyInt4Linear
    from ppx_desktop.engine.int8 import WeightOnlyInt8Linear
    from ppx_desktop.engine.quant import packing_for

    n, k = 256, 1024
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(n, k, generator=gen) * k**-0.5).to(torch.bfloat16)
    x = torch.randn(2, k, generator=gen).to(torch.bfloat16)
    try:
        if kind == "int8":
            layer = WeightOnlyInt8Linear(k, n, device=device, dtype=torch.bfloat16)
            layer.load_state_dict(WeightOnlyInt8Linear.quantize(w.to(device), 0, torch.bfloat16))
            deq = layer.weight.float() * layer.scales.float()[:, None]
        else:
            from ppx_desktop.engine.int4 import dequantize_int4, quantize_int4

            packing = packing_for(device)
            layer = WeightOnlyInt4Linear(k, n, kind=packing, device=device, dtype=torch.bfloat16)
            layer.load_state_dict(WeightOnlyInt4Linear.quantize(w.to(device), 0, torch.bfloat16, kind=packing))
            q, sz, layout = quantize_int4(w.to(device), torch.bfloat16)
            deq = dequantize_int4(q, sz, layout)
        y = layer(x.to(device)).float().cpu()
        ref = (x.float() @ deq.cpu().T)
        err = float((y - ref).norm() / ref.norm())
        return {"runs": True, "matches": err < 1e-2, "rel_err": round(err, 5)}
    except Exception as exc:  # a missing kernel is a finding, not a crash of the check
        return {"runs": False, "matches": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def check_environment(run, parts) -> None:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
            "triton": triton_version(), "platform": platform.platform(), "cpu_threads": torch.get_num_threads()}
    if not run.cuda:
        cpu = {kind: probe_kernel(kind, torch.device("cpu")) for kind in ("int8", "int4")}
        parts.needs_cuda("CUDA device", "a CUDA device is visible; its driver, capability and free memory are read",
                         **info)
        parts.judge("CPU kernels", "dry run: the int8 and int4 layers run on the CPU kernels and match their "
                    "dequantised weights (relative error < 1e-2)", all(v["matches"] for v in cpu.values()), **cpu)
        word = {k: "ok" if v["matches"] else "FAILED" for k, v in cpu.items()}
        parts.summary = f"dry run: torch {torch.__version__}, no CUDA; CPU int8 {word['int8']}, int4 {word['int4']}"
        return
    from .cuda import environment

    info.update(environment(run.device))
    parts.judge("CUDA device", "a CUDA device is visible; its driver, capability and free memory are read", True,
                **info)
    int8 = probe_kernel("int8", run.device)
    parts.judge("int8 kernel", "torch._weight_int8pack_mm runs on the GPU and matches the dequantised weight "
                "(relative error < 1e-2)", int8["matches"], **int8)
    reason = int4_unavailable(run)
    criterion = ("tinygemm (torch._weight_int4pack_mm) runs on the CUDA packing and matches the dequantised "
                 "weight (relative error < 1e-2)")
    if reason is not None:
        parts.needs_cuda("int4 kernel", criterion + " (compute capability 8.0+; int4 is refused here, as the app does)",
                         reason=reason)
        int4 = {"matches": None}
    else:
        int4 = probe_kernel("int4", run.device)
        parts.judge("int4 kernel", criterion, int4["matches"], **int4)
    word = {True: "ok", False: "FAILED", None: "refused (sm < 8.0)"}
    parts.summary = (f"{info['gpu']} (sm {info['compute_capability']}), driver {info['driver']}, CUDA "
                     f"{info['cuda_runtime']}, {info['free_gib']:.1f}/{info['memory_gib']:.1f} GiB free; int8 "
                     f"{word[int8['matches']]}, int4 {word[int4['matches']]}; Triton {info['triton'] or 'absent'}")


def _junit(path) -> dict:
    root = ET.parse(path).getroot()
    passed, failed, skipped = [], [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            failed.append({"test": name, "message": (bad.get("message") or "")[:300]})
        elif skip is not None:
            skipped.append({"test": name, "reason": (skip.get("message") or "")[:200]})
        else:
            passed.append(name)
    return {"passed": passed, "failed": failed, "skipped": skipped}


def check_gpu_tier(run, parts) -> None:
    tier = run.repo / "tests" / "gpu"
    if not tier.is_dir():
        raise FileNotFoundError(f"{tier} not found: run the script from a checkout of ppx-desktop")
    xml = run.out / "gpu_tests.xml"
    xml.unlink(missing_ok=True)
    # The suite's own options (two xdist workers) are dropped; the child's temporary files stay here.
    cmd = [sys.executable, "-m", "pytest", str(tier), "-m", "cuda", "-o", "addopts=", "-p", "no:cacheprovider",
           "-q", "-rs", f"--junitxml={xml}", f"--basetemp={run.work / 'pytest'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=run.repo, env=env, capture_output=True, text=True, timeout=900)
    seconds = round(time.perf_counter() - t0, 1)
    (run.out / "gpu_tests.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if not xml.is_file():
        raise RuntimeError(f"pytest wrote no results (exit code {proc.returncode}): {proc.stdout[-400:]}")
    r = _junit(xml)
    values = {"passed": len(r["passed"]), "failed": r["failed"], "skipped": len(r["skipped"]),
              "skip_reasons": sorted({s["reason"] for s in r["skipped"]}), "seconds": seconds,
              "exit_code": proc.returncode, "log": "gpu_tests.log"}
    criterion = "every test of tests/gpu (marked cuda) passes; skips only where the GPU lacks a feature (int4 < sm80)"
    if not r["passed"] and not r["failed"] and all(s["reason"].startswith("needs CUDA") for s in r["skipped"]):
        parts.needs_cuda("tests/gpu", criterion, **values)
    else:
        parts.judge("tests/gpu", criterion, not r["failed"] and r["passed"] and proc.returncode == 0, **values)
    parts.summary = (f"{len(r['passed'])} passed, {len(r['failed'])} failed, {len(r['skipped'])} skipped"
                     + (f" ({values['skip_reasons'][0]})" if values["skip_reasons"] else "") + f" in {seconds:.0f} s")
