"""The first-run GPU check: verdicts for made-up machines, nvidia-smi parsing, and this machine."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest

from ppx_desktop import gpucheck
from ppx_desktop.gpucheck import SmiGpu, build_report, parse_nvidia_smi

RTX4090 = SmiGpu("NVIDIA GeForce RTX 4090", "560.35.03", 23.99, 23.5)


def cuda_machine(name="NVIDIA GeForce RTX 4090", free=23.0, total=24.0, capability=(8, 9), compile_ok=True):
    return build_report(torch_version="2.6.0+cu124", torch_cuda_version="12.4", smi=[RTX4090], compile_ok=compile_ok,
                        name=name, capability=capability, free_gb=free, total_gb=total)


@pytest.mark.parametrize("free,total,mode,phrase", [
    pytest.param(23.0, 24.0, "bf16", "full bfloat16 model fits", id="rtx4090-idle"),
    pytest.param(14.0, 24.0, "int8", "uses int8 weights", id="rtx4090-busy"),
    pytest.param(15.5, 16.0, "int8", "uses int8 weights", id="16gb-card"),
    pytest.param(7.6, 8.0, "int4", "int4 weights with a context of 2250 frames (3.0 minutes", id="8gb-card"),
    pytest.param(5.5, 6.0, "turn-based", "will not run", id="6gb-card"),
    pytest.param(76.0, 80.0, "bf16", "full bfloat16 model fits", id="a100"),
])
def test_modes_follow_free_memory(free, total, mode, phrase):
    report = cuda_machine(free=free, total=total)
    assert report.available and report.mode == mode
    assert report.verdict[0] == f"NVIDIA GeForce RTX 4090: {gpucheck.MODE_SUMMARY[mode]} will run."
    assert phrase in report.text()
    assert "driver 560.35.03" in report.text() and "CUDA 12.4" in report.text()


def test_memory_held_by_other_programs_is_named():
    report = cuda_machine(free=14.0, total=24.0)
    assert "Other programs use 10.0 GiB of GPU memory: close them to get live full-duplex conversation (bfloat16)" \
        in report.text()
    assert "Other programs" not in cuda_machine(free=15.5, total=16.0).text()  # 16 GB cards never fit bf16
    assert "Other programs use 7.0 GiB" in cuda_machine(free=9.0, total=16.0).text()  # but int8 would


def test_int4_needs_ampere():
    report = cuda_machine(name="NVIDIA GeForce RTX 2080", free=7.6, total=8.0, capability=(7, 5))
    assert report.mode == "turn-based" and "needs at least about 11.4 GiB free (int8 weights)" in report.text()


def test_old_gpu_and_missing_triton_are_explained():
    report = cuda_machine(name="Quadro RTX 8000", free=46.0, total=48.0, capability=(7, 5), compile_ok=False)
    assert report.mode == "bf16"
    assert "no native bfloat16" in report.text()
    assert "CUDA graphs instead" in report.text()
    assert "no native bfloat16" not in cuda_machine().text()
    assert "CUDA graphs" not in cuda_machine().text()


@pytest.mark.parametrize("cuda,smi,error,expected", [
    pytest.param(None, None, None, "CPU-only build", id="cpu-torch-no-gpu"),
    pytest.param(None, [RTX4090], None, "would work with a CUDA build of PyTorch", id="cpu-torch-with-gpu"),
    pytest.param("12.4", [RTX4090], None, "update the NVIDIA driver", id="driver-too-old"),
    pytest.param("12.4", None, None, "install the NVIDIA driver", id="no-driver"),
    pytest.param("12.4", [RTX4090], "RuntimeError: CUDA error: no kernel image", "could not start the GPU: Runtime",
                 id="cuda-error"),
])
def test_no_usable_gpu_means_demo_only(cuda, smi, error, expected):
    report = build_report(torch_version="2.6.0", torch_cuda_version=cuda, smi=smi, compile_ok=False,
                          cuda_error=error)
    assert not report.available and report.mode == "demo"
    assert report.verdict[0] == "No NVIDIA GPU visible: only the demo model will run."
    assert expected in report.text()


def test_parse_nvidia_smi_lines():
    out = "NVIDIA GeForce RTX 4090, 560.35.03, 24564, 24080\nNVIDIA A100-SXM4-80GB, 535.54.03, [N/A], [N/A]\n"
    first, second = parse_nvidia_smi(out)
    assert first == SmiGpu("NVIDIA GeForce RTX 4090", "560.35.03", 24564 / 1024, 24080 / 1024)
    assert second.name == "NVIDIA A100-SXM4-80GB" and second.total_gb != second.total_gb  # NaN


def test_query_nvidia_smi_runs_the_tool_or_reports_none(monkeypatch):
    monkeypatch.setattr(gpucheck.shutil, "which", lambda name: None)
    assert gpucheck.query_nvidia_smi() is None

    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "NVIDIA L40S, 550.90.07, 46068, 45000\n", "")

    monkeypatch.setattr(gpucheck.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert gpucheck.query_nvidia_smi(fake_run)[0].name == "NVIDIA L40S"
    assert calls[0][0] == "/usr/bin/nvidia-smi" and "--format=csv,noheader,nounits" in calls[0]

    failed = gpucheck.query_nvidia_smi(lambda cmd, **kw: subprocess.CompletedProcess(cmd, 9, "", "NVML: no driver"))
    assert failed is None


def test_compile_and_accel_mode(monkeypatch):
    has_triton = importlib.util.find_spec("triton") is not None
    assert gpucheck.compile_supported() == (has_triton and gpucheck._c_compiler() is not None)
    assert gpucheck.accel_mode("cpu") == "eager"
    monkeypatch.setattr(gpucheck.importlib.util, "find_spec", lambda name: None)
    assert not gpucheck.compile_supported()
    assert gpucheck.accel_mode("cuda") == "cuda-graphs"


def test_this_machine_and_the_first_run_report():
    """The test machines have no usable GPU: the real probe must say so instead of failing."""
    import torch

    report = gpucheck.first_run_report()
    assert report is not None
    if not torch.cuda.is_available():
        assert report.mode == "demo" and not report.available
        assert report.verdict[0] == "No NVIDIA GPU visible: only the demo model will run."
    saved = json.loads(gpucheck.saved_report_path().read_text())
    assert saved["mode"] == report.mode and saved["verdict"] == list(report.verdict)
    assert gpucheck.first_run_report() is None  # shown once
