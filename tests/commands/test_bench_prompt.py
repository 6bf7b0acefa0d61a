"""`ppx-desktop bench --prompt`: the prompt phases stepwise and batched, and a context refresh."""

from __future__ import annotations

import json

from ppx_desktop.cli import main


def test_bench_prompt_tiny_json(capsys):
    assert main(["bench", "--prompt", "--config", "tiny", "--device", "cpu", "--steps", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["stepwise_ms"] > 0 and r["batched_ms"] > 0 and r["refresh_ms"] > 0 and r["calibration_ms"] > 0
    assert r["speedup"] == r["stepwise_ms"] / r["batched_ms"]  # measured in the same run, not asserted fast
    assert r["voice_frames"] == 125 and r["persona_tokens"] == 32
    assert r["prompt_frames"] == r["voice_frames"] + 6 + r["persona_tokens"] + 6
    # The demo model's 256-frame context leaves 86 frames beside this prompt: 85 kept, one in flight.
    assert r["refresh_frames_before"] == 255 and r["refresh_kept_frames"] == 255 - r["prompt_frames"] - 1
    assert r["wav_stepwise_ms"] > 0 and r["wav_batched_ms"] > 0 and r["activation_bound_bytes"] > 0


def test_bench_prompt_table(capsys):
    assert main(["bench", "--prompt", "--config", "tiny", "--device", "cpu", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "prompt phases, stepwise" in out and "x faster" in out and "context refresh" in out
