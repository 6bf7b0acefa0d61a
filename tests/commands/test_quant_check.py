"""`ppx-desktop quant-check` on a tiny model: teacher-forced agreement of int8 and int4 with float32."""

from __future__ import annotations

import json

import pytest

from ppx_desktop.cli import main


@pytest.mark.parametrize("quant, agreement, kl", [
    # Measured on the tiny model (seed 3) over 149 frames: int8 98.7 % text, int4 89.3 %; KL 1e-5 / 6e-4.
    pytest.param("int8", 0.95, 0.01, id="int8"),
    pytest.param("int4", 0.80, 0.05, id="int4"),
])
def test_quantised_predictions_agree_with_float(tiny_model_dir, capsys, quant, agreement, kl):
    assert main(["quant-check", "--model-dir", str(tiny_model_dir), "--device", "cpu", "--quant", quant,
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["precision"] == quant and r["frames"] > 100
    assert r["text_agreement"] >= agreement
    assert len(r["audio_agreement"]) == 8 and min(r["audio_agreement"]) >= agreement - 0.1
    assert 0 <= r["text_kl"] < kl and 0 <= r["semantic_kl"] < kl
    assert r["verdict"]


def test_a_model_compared_with_itself_agrees_everywhere(tiny_model_dir):
    """The teacher forcing is exact: the same model forced on its own choices predicts them again."""
    from ppx_desktop.assets.resources import resources_dir
    from ppx_desktop.audio.files import read_audio
    from ppx_desktop.engine.model import load_model
    from ppx_desktop.engine.quantcheck import compare, conversation_frames, run_pass

    model = load_model(tiny_model_dir, device="cpu")
    frames = conversation_frames(read_audio(resources_dir() / "speech" / "quant_check.wav")[:24000], 1.0)
    voice = model.load_voice("NATF0")
    ref = run_pass(model, voice, [5, 6], frames)
    again = run_pass(model, voice, [5, 6], frames, forced=ref)
    result = compare(ref, again, "none")
    assert result.text_agreement == 1.0 and result.audio_agreement == [1.0] * 8
    assert result.text_kl == pytest.approx(0, abs=1e-6) and "close" in result.verdict
