"""`ppx-desktop status`: installed files, missing ones, the GPU verdict and the exit code."""

from __future__ import annotations

import pytest

from ppx_desktop.cli import main
from ppx_desktop.commands import status
from ppx_desktop.commands.status import GpuInfo
from ppx_desktop.paths import voices_dir

GB = 10**9


@pytest.fixture
def gpu(monkeypatch):
    box = {"gpu": None, "why": "this PyTorch (test) is a CPU-only build; install a CUDA build"}
    monkeypatch.setattr(status, "probe_gpu", lambda: (box["gpu"], box["why"]))
    return box


def test_no_model_and_no_gpu_is_not_ready(gpu, capsys):
    assert main(["status"]) == 1
    out = capsys.readouterr().out
    assert "is not downloaded" in out and "ppx-desktop download" in out
    assert "GPU: none (this PyTorch (test) is a CPU-only build" in out and out.rstrip().endswith("not ready")


def test_complete_model_on_a_large_fast_gpu_is_ready(gpu, tiny_model_dir, capsys):
    gpu["gpu"] = GpuInfo("NVIDIA GeForce RTX 4090", 24 * GB, 23 * GB)
    (voices_dir() / "Mine.pt").write_bytes(b"x")
    assert main(["status", "--model-dir", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert f"model: {tiny_model_dir}" in out and "voices: 4 (NATF0, NATM0, VARF0, VARM0)" in out
    assert "custom voices" in out and "Mine" in out
    assert "GPU: NVIDIA GeForce RTX 4090, 21.4 GiB free of 22.4 GiB" in out
    # 16.76 GB moved per frame (measured by the byte trace) at 1010 GB/s and 60 % of it.
    assert "real time: yes with bfloat16 weights - about 28 ms of work per 80 ms frame" in out
    assert "bfloat16 about 19.0 GiB, int8 weights about 11.4 GiB, int4 about 7.9 GiB" in out
    assert out.rstrip().endswith("ready to talk")


@pytest.mark.parametrize("name, free, code, words", [
    pytest.param("NVIDIA GeForce RTX 4070", 11, 0, "real time: yes with int4 weights", id="12gb-card"),
    pytest.param("NVIDIA GeForce RTX 4060", 7.5, 0, "int4 weights fit with --context 1250", id="8gb-card"),
    pytest.param("NVIDIA GeForce RTX 3050", 6, 1, "not enough free GPU memory even for int4", id="small-card"),
    pytest.param("NVIDIA GeForce RTX 3050", 6, 1, "layers stay in host memory", id="small-card-offload"),
    pytest.param("NVIDIA GeForce RTX 4080", 15, 0, "real time: yes with int8 weights", id="int8-fits"),
    # DGX Spark: bfloat16 fits its memory but is too slow for 80 ms; int8 is not.
    pytest.param("NVIDIA GB10", 100, 0, "about 57 ms of work per 80 ms", id="slow-memory"),
    pytest.param("NVIDIA L4", 23, 0, "real time: yes with int8 weights", id="l4"),
    pytest.param("NVIDIA T1000", 30, 0, "real time: unknown for this GPU", id="unknown-bandwidth"),
])
def test_gpu_verdicts(gpu, tiny_model_dir, capsys, name, free, code, words):
    gpu["gpu"] = GpuInfo(name, 128 * GB, int(free * GB))
    assert main(["status", "--model-dir", str(tiny_model_dir)]) == code
    assert words in capsys.readouterr().out


def test_missing_files_are_listed(gpu, tmp_path, capsys):
    gpu["gpu"] = GpuInfo("NVIDIA H100 80GB HBM3", 80 * GB, 79 * GB)
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    assert main(["status", "--model-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "missing: tokenizer-e351c8d8-checkpoint125.safetensors; tokenizer_spm_32k_3.model; voices/*.pt" in out
