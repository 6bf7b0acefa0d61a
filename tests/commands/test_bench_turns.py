"""`ppx-desktop bench --end-of-turn` on a make-tiny-model directory: the plumbing, honestly labelled."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from ppx_desktop.cli import main


def test_bench_end_of_turn_times_both_rules_on_the_bundled_speech(tiny_model_dir, capsys):
    assert main(["bench", "--end-of-turn", "--model-dir", str(tiny_model_dir), "--device", "cpu", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["random_weights"] and r["stt_model_dir"].endswith("stt") and r["input_wav"].endswith("quant_check.wav")
    assert len(r["turns"]) == 1 and r["end_silence_s"] == 1.5  # the bundled question is one turn
    turn = r["turns"][0]
    assert turn["silence_end_s"] - turn["speech_end_s"] >= 1.4
    assert r["semantic_ended"] + r["cut_off"] <= 1 and r["median_gain_s"] >= 0.0


def test_bench_end_of_turn_table_says_what_random_weights_mean(tiny_model_dir, tmp_path, capsys):
    wav = tmp_path / "two.wav"
    voice = np.sin(np.linspace(0, 2400 * np.pi, 24_000)).astype(np.float32) * 0.3
    sf.write(str(wav), np.concatenate([voice, np.zeros(24_000 * 2, np.float32), voice]), 24_000)
    args = ["bench", "--end-of-turn", "--stt-model-dir", str(tiny_model_dir / "stt"), "--input-wav", str(wav),
            "--end-silence", "0.8", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "silence ends a turn after 0.8 s" in out and "random weights" in out


def test_bench_end_of_turn_without_the_model_says_how_to_get_it(capsys):
    # Nothing downloaded (the suite's data and Hub folders are fresh per test).
    assert main(["bench", "--end-of-turn", "--device", "cpu"]) != 0
    assert "--with-transcription" in capsys.readouterr().err
