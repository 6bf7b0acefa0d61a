"""`ppx-desktop bench` on the CPU: the numbers it prints are measured and consistent."""

from __future__ import annotations

import json

from ppx_desktop.cli import main


def test_bench_tiny_json(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--steps", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for part in ("frame", "encode", "lm_step", "decode"):
        assert 0 < result[part]["median_ms"] <= result[part]["p95_ms"]
    assert result["real_time_factor"] == result["frame"]["median_ms"] / 80
    assert 100 < result["ops_per_frame"] < 3000
    assert result["peak_memory_bytes"] > 0 and result["load_s"] > 0 and result["capture"] == "off"
    assert result["quant"] == "none" and "bandwidth_gb_s" not in result


def test_bench_table_int8(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--quant", "int8", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "quant int8" in out and "real-time factor" in out and "ops per frame" in out


def test_bench_fp8_on_cpu_is_a_clear_error(capsys):
    assert main(["bench", "--config", "tiny", "--device", "cpu", "--quant", "fp8"]) == 1
    assert "compute capability 8.9" in capsys.readouterr().err


def test_bench_full_refuses_what_ram_cannot_hold(capsys, monkeypatch):
    import os

    real = os.sysconf
    # 16 GiB free: float32 (35 GiB) is refused before anything is built; the advice names bf16/int8.
    monkeypatch.setattr(os, "sysconf", lambda name: 4096 if name == "SC_PAGE_SIZE" else
                        (4 * 2**20 if name == "SC_AVPHYS_PAGES" else real(name)))
    assert main(["bench", "--config", "full", "--device", "cpu", "--dtype", "float32"]) == 1
    err = capsys.readouterr().err
    assert "needs about 35" in err and "16.0 GiB is free" in err and "--dtype bfloat16" in err
