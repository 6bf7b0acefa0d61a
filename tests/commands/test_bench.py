"""`ppx-desktop bench` on the CPU: the numbers it prints are measured and consistent."""

from __future__ import annotations

import json

import pytest

from ppx_desktop.cli import main


def test_bench_tiny_json(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for part in ("frame", "eager_frame", "encode", "lm_step", "decode"):
        assert 0 < result[part]["median_ms"] <= result[part]["p95_ms"]
    assert result["ms_per_frame"] == result["frame"]["median_ms"]
    assert result["real_time_factor"] == result["frame"]["median_ms"] / 80
    assert 100 < result["ops_per_frame"] < 3000
    assert result["bytes_per_frame"] > result["bytes_read_per_frame"] > 0
    assert result["peak_memory_bytes"] > 0 and result["load_s"] > 0 and result["capture"] == "off"
    assert result["quant"] == "none" and "bandwidth_gb_s" not in result


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_bench_table_quantised(capsys, quant):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--quant", quant, "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert f"quant {quant}" in out and "real-time factor" in out and "bytes per frame" in out


def test_bench_fp8_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--config", "tiny", "--device", "cpu", "--quant", "fp8"])
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_bench_memory_json(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--memory", "--steps", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert 0 < r["peak_gib"] <= r["planned_device_gib"] and r["planned_gib"] == r["planned_device_gib"]  # no CUDA
    assert [p["phase"] for p in r["phases"]][-1] == "custom voice"


def test_bench_meta_needs_memory(capsys):
    assert main(["bench", "--config", "full", "--device", "meta"]) == 1
    assert "use it with --memory" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_layer_reports_time_and_bytes(capsys):
    assert main(["bench", "--config", "layer", "--device", "cpu", "--dtype", "bfloat16", "--steps", "3",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["config"] == "layer" and r["ms_per_frame"] > 0 and r["kv_slots"] == 750
    # One temporal layer (205 M weights) and one depformer sub-step (83 M) at 2 bytes each, plus the
    # 750 KV slots read: measured by the trace.
    assert r["params"] > 289e6 and 0.58e9 < r["bytes_per_frame"] < 0.61e9


def test_bench_full_refuses_what_ram_cannot_hold(capsys, monkeypatch):
    import os

    real = os.sysconf
    # 16 GiB free: float32 (35 GiB) is refused before anything is built; the advice names bf16/int8.
    monkeypatch.setattr(os, "sysconf", lambda name: 4096 if name == "SC_PAGE_SIZE" else
                        (4 * 2**20 if name == "SC_AVPHYS_PAGES" else real(name)))
    assert main(["bench", "--config", "full", "--device", "cpu", "--dtype", "float32"]) == 1
    err = capsys.readouterr().err
    assert "needs about 35" in err and "16.0 GiB is free" in err and "--dtype bfloat16" in err


def test_bench_with_transcription_reports_its_cost(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--steps", "3", "--json"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--steps", "3", "--json", "--transcribe"]) == 0
    with_stt = json.loads(capsys.readouterr().out)
    assert with_stt["transcription"] and not without["transcription"]
    assert with_stt["bytes_per_frame"] > without["bytes_per_frame"]
    assert with_stt["ops_per_frame"] > without["ops_per_frame"]
