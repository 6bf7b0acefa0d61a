"""The semantic end-of-turn rule and the measurement of how much sooner it ends a turn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ppx_desktop.audio.vad import VadConfig
from ppx_desktop.session.semantic_turn import SemanticEndOfTurn, SemanticTurnRule
from ppx_desktop.session.turn_timing import time_turn_ends, with_lead_and_tail

SPEECH = Path(__file__).resolve().parents[1] / "audio" / "data" / "near_speech.wav"


def test_the_rule_needs_the_probability_held_and_some_silence():
    rule = SemanticEndOfTurn(SemanticTurnRule(threshold=0.6, hold_frames=2, min_silence_s=0.16))
    assert not rule.push(0.9, 0.5)  # one frame is not enough
    assert rule.push(0.9, 0.5)
    rule.reset()
    assert not rule.push(0.9, 0.0) and not rule.push(0.9, 0.1)  # sure, but the user still speaks
    assert rule.push(0.9, 0.2)
    rule.reset()
    assert not rule.push(0.9, 1.0) and not rule.push(0.59, 1.0) and not rule.push(0.9, 1.0)  # a dip restarts
    assert not rule.push(math.nan, 1.0)  # no speech-to-text model: never
    with pytest.raises(ValueError):
        SemanticTurnRule(threshold=1.5)


@pytest.fixture(scope="module")
def speech():
    audio, rate = sf.read(SPEECH, dtype="float32")
    assert rate == 24_000
    return audio


def frame_times(n: int) -> np.ndarray:
    return (np.arange(n) + 1) / 12.5


def test_a_model_sure_at_the_speech_end_ends_the_turn_sooner(speech):
    vad = VadConfig(end_silence_s=1.5)
    audio = with_lead_and_tail(speech, vad)
    n = len(audio) // 1920
    silent = time_turn_ends(audio, np.zeros(n), vad)
    assert len(silent.turns) == 1 and silent.fired == 0 and silent.median_gain_s == 0.0
    turn = silent.turns[0]
    assert turn.silence_end_s == pytest.approx(turn.speech_end_s + 1.5, abs=0.1)
    # A model that says "finished" from the end of the speech on: the turn ends after the rule's
    # short hold, well over a second before the silence would end it.
    probs = (frame_times(n) > turn.speech_end_s).astype(np.float32)
    report = time_turn_ends(audio, probs, vad)
    t = report.turns[0]
    assert report.fired == 1 and not t.cut_off
    assert turn.speech_end_s < t.semantic_end_s <= turn.speech_end_s + 0.4
    assert 1.1 <= t.gain_s <= 1.5 and report.median_gain_s == t.gain_s
    assert "sooner" in report.summary() and report.to_json()["turns"][0]["gain_s"] == t.gain_s


def test_a_model_that_fires_in_a_pause_inside_the_turn_is_counted_as_a_cut(speech):
    vad = VadConfig(end_silence_s=1.5)
    # Two sentences with a 0.6 s pause between them: one turn for the silence rule.
    audio = with_lead_and_tail(np.concatenate([speech, np.zeros(int(0.6 * 24_000), np.float32), speech]), vad)
    n = len(audio) // 1920
    turn = time_turn_ends(audio, np.zeros(n), vad).turns[0]
    report = time_turn_ends(audio, np.ones(n, np.float32), vad)  # always sure: fires in the pause
    t = report.turns[0]
    assert len(report.turns) == 1 and t.cut_off and t.semantic_end_s < turn.speech_end_s - 2.0
    assert report.cut_off == 1 and report.fired == 0 and t.gain_s == 0.0 and "cut off" in report.summary()
