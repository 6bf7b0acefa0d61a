"""scripts/gpu_acceptance.py: the dry run on the CPU proves the script, and its pieces hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_acceptance.py"
sys.path.insert(0, str(ROOT / "scripts"))

from acceptance import report  # noqa: E402
from acceptance.cuda import copy_compute_overlap  # noqa: E402

NEEDS, PASS = report.NEEDS_CUDA, report.PASS
# What the dry run decides on the CPU and what it leaves to a GPU, check by check and part by part.
EXPECTED = {
    1: (NEEDS, {"CUDA device": NEEDS, "CPU kernels": PASS}),
    2: (NEEDS, {"tests/gpu": NEEDS}),
    3: (PASS, {"capture": PASS, "replays": PASS}),
    4: (PASS, {"first KV boundary": PASS, "context wrap": PASS}),
    5: (PASS, {"seeded": PASS, "fresh draws": PASS}),
    6: (NEEDS, {"bfloat16": NEEDS, "int8": NEEDS, "int4": NEEDS, "int8 faster than bfloat16": NEEDS,
                "int4 faster than int8": NEEDS}),
    7: (NEEDS, {"bfloat16 session": PASS, "int8 session": PASS, "int4 session": PASS,
                "bfloat16 capped at 24 GiB": NEEDS, "int8 capped at 12 GiB": NEEDS, "int4 capped at 8 GiB": NEEDS}),
    8: (NEEDS, {"tokens": PASS, "overlap": NEEDS}),
    9: (NEEDS, {"end to end": PASS, "real time": NEEDS}),
    10: (NEEDS, {"codes": NEEDS}),
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-acceptance")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    return proc, out


@pytest.mark.slow
def test_the_dry_run_runs_every_check_it_can_and_leaves_the_rest_to_a_gpu(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "gpu_report.json").read_text())
    assert data["mode"].startswith("dry run") and data["checks_run"] == list(range(1, 11))
    checks = {c["id"]: c for c in data["checks"]}
    assert sorted(checks) == list(range(1, 11))
    for cid, (status, parts) in EXPECTED.items():
        c = checks[cid]
        assert c["criterion"] and c["summary"] and c["seconds"] >= 0, c
        assert (c["status"], {p["name"]: p["status"] for p in c["parts"]}) == (status, parts), (cid, c)
        assert all(p["criterion"] for p in c["parts"])
    assert data["totals"] == {"pass": 3, "fail": 0, "error": 0, "needs CUDA": 7}
    # One progress line before and one after each check.
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[") and "/10]" in line]
    assert len(progress) == 20
    table = [line for line in (out / "gpu_report.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 10  # header and one row per check


@pytest.mark.slow
def test_the_dry_runs_measurements_are_real(dry_run):
    _, out = dry_run
    checks = {c["id"]: {p["name"]: p["values"] for p in c["parts"]} for c in
              json.loads((out / "gpu_report.json").read_text())["checks"]}
    tier = checks[2]["tests/gpu"]
    assert tier["passed"] == 0 and tier["skipped"] >= 15 and tier["skip_reasons"][0].startswith("needs CUDA")
    capture = checks[3]
    assert capture["capture"]["graphs"] == capture["capture"]["expected"] == 4
    assert capture["replays"]["replays"] == 200 and capture["replays"]["syncs"] == []
    # The tiny model's 256-slot ring: the frames cross the first part's end (64) and the ring's end.
    boundary, wrap = checks[4]["first KV boundary"], checks[4]["context wrap"]
    assert boundary["kv_limits"] == [64, 128] and boundary["token_mismatch_frames"] == []
    assert wrap["start_offset"] == 250 and wrap["kv_limits"] == [None]
    speed = checks[6]["bfloat16"]
    assert speed["bytes_per_frame_gb"] > 0 and speed["attention"]["operators"]
    assert all(v["tracked_peak_gib"] <= v["planned_device_gib"] for k, v in checks[7].items() if "session" in k)
    assert checks[8]["tokens"]["layer_copies"] > 0
    live = checks[9]["end to end"]
    assert live["reused_in_place"] and live["errors"] == []
    for session in (live["first"], live["second"]):  # on a loaded machine frames may drop; none is lost
        assert session["stepped"] == session["delivered"] == session["frames"] - session["dropped"]
    assert 0.9 <= checks[10]["codes"]["dry_run_float64_vs_float32"]["identical_frames"] <= 1.0


def test_without_a_gpu_the_real_run_refuses_and_names_the_dry_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real run would start")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--dry-run" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failing_check_is_reported_and_the_next_still_runs(tmp_path, capsys):
    class Run:
        cuda = False

        def tidy(self):
            pass

    def broken(run, parts):
        parts.judge("first", "holds", True, x=1)
        raise RuntimeError("the device fell over")

    def fine(run, parts):
        parts.judge("only", "holds", True)
        parts.cuda_only("later", "needs a GPU", True, y=2)
        parts.summary = "ok"

    results = report.run_checks([report.Check(1, "broken", "c1", broken), report.Check(2, "fine", "c2", fine)],
                                Run(), total=2)
    assert [r.status for r in results] == [report.ERROR, report.NEEDS_CUDA]
    assert [p.status for p in results[0].parts] == [PASS, report.ERROR]  # what ran before the failure is kept
    assert "RuntimeError: the device fell over" in results[0].parts[-1].values["error"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "error" in lines[1] and "needs CUDA" in lines[3]
    meta = {"mode": "test", "device": "cpu", "model": "none", "torch": "x", "ppx_desktop": "y", "git": "z",
            "started": "now", "seconds": 1.0}
    json_path, md_path = report.write_report(tmp_path, meta, results)
    data = json.loads(json_path.read_text())
    assert data["totals"]["error"] == 1 and data["checks"][1]["parts"][1]["values"] == {"y": 2}
    md = md_path.read_text()
    assert "| 1 | broken | c1 |" in md and "**error**" in md and "## Failures and errors" in md


def _event(cat, name, ts, dur, tid):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": tid}


def test_copy_compute_overlap_reads_the_timeline():
    # Kernels on stream 7 from 0 to 100 us; copies on stream 20: 50-150 (half hidden) and 200-250 (alone).
    trace = {"traceEvents": [
        _event("kernel", "gemv", 0, 60, 7), _event("kernel", "gemv", 60, 40, 7),
        _event("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 50, 100, 20),
        _event("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 200, 50, 20),
        _event("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 0, 500, 7),  # not a layer copy
        _event("kernel", "on the copy stream", 200, 50, 20),  # the same stream cannot overlap itself
    ]}
    got = copy_compute_overlap(trace)
    assert got["copies"] == 2 and got["copy_ms"] == 0.15 and got["overlap_ms"] == 0.05
    assert got["kernel_ms"] == 0.15 and got["ratio"] == pytest.approx(0.05 / 0.15, abs=1e-3)
    assert copy_compute_overlap({"traceEvents": []})["ratio"] == 0.0


@pytest.mark.parametrize("size", [256, 32000])
def test_the_live_checks_vocabulary_has_the_models_size(tmp_path, size):
    from acceptance.live import vocabulary_tokenizer

    tok = vocabulary_tokenizer(size, tmp_path / "v.model")
    assert tok.vocab_size == size and tok.piece_text(3) == "PAD" and tok.piece_text(size - 1)
    assert tok.encode_system_prompt("You enjoy having a good conversation.")
