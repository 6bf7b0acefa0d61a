"""`respond --transcribe-user`: both sides of the conversation in one transcript file."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from ppx_desktop.cli import main
from ppx_desktop.engine.tiny import synthetic_voice


def test_respond_writes_both_speakers(tiny_model_dir, tmp_path, capsys):
    turn = tmp_path / "turn.wav"
    sf.write(turn, np.concatenate([synthetic_voice(i, 1.2) for i in range(2)]), 24000)
    out, transcript, text = tmp_path / "answer.wav", tmp_path / "T.json", tmp_path / "answers.json"
    assert main(["respond", "--model-dir", str(tiny_model_dir), "--voice", "NATF0", "--input-wav", str(turn),
                 str(turn), "--output-wav", str(out), "--output-text", str(text), "--output-transcript",
                 str(transcript), "--transcribe-user", "--device", "cpu", "--greedy", "--max-steps", "20"]) == 0
    entries = json.loads(transcript.read_text())
    assert {e["speaker"] for e in entries} == {"user", "agent"}
    assert all(set(e) == {"speaker", "text", "start", "end"} and 0 <= e["start"] <= e["end"] for e in entries)
    user = [e for e in entries if e["speaker"] == "user"]
    agent = [e for e in entries if e["speaker"] == "agent"]
    assert len(agent) == 2 and all(e["text"] for e in user)  # random tiny weights: random words, but words
    assert agent[1]["start"] >= agent[0]["end"] and user[-1]["start"] >= agent[0]["end"]  # turn 2 after answer 1
    assert "you said" in capsys.readouterr().out
    # The reference-format output is unchanged: no user words in it.
    assert set(json.loads(text.read_text())) == {"voice", "prompt", "turns"}


def test_transcript_needs_transcription(tiny_model_dir, tmp_path, capsys):
    turn = tmp_path / "turn.wav"
    sf.write(turn, synthetic_voice(0, 1.0), 24000)
    assert main(["respond", "--model-dir", str(tiny_model_dir), "--voice", "NATF0", "--input-wav", str(turn),
                 "--output-wav", str(tmp_path / "a.wav"), "--output-transcript", str(tmp_path / "T.json")]) == 1
    assert "needs --transcribe-user" in capsys.readouterr().err
    assert not (tmp_path / "a.wav").exists()


def test_offline_writes_both_speakers_and_keeps_the_reference_text(tiny_model_dir, tmp_path):
    wav = tmp_path / "in.wav"
    sf.write(wav, np.concatenate([synthetic_voice(i, 1.2) for i in range(2)]), 24000)
    text, transcript = tmp_path / "out.json", tmp_path / "T.json"
    assert main(["offline", "--model-dir", str(tiny_model_dir), "--voice", "NATF0", "--input-wav", str(wav),
                 "--output-wav", str(tmp_path / "out.wav"), "--output-text", str(text), "--transcribe-user",
                 "--output-transcript", str(transcript), "--device", "cpu", "--greedy"]) == 0
    assert isinstance(json.loads(text.read_text()), list)  # the reference's per-frame list, unchanged
    entries = json.loads(transcript.read_text())
    assert {e["speaker"] for e in entries} == {"user", "agent"}
    assert [e["start"] for e in entries] == sorted(e["start"] for e in entries)
