"""Custom voices work by name wherever a preset does: `offline`, `respond`, the inference worker."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from ppx_desktop.cli import main
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.tiny import synthetic_voice
from ppx_desktop.paths import voices_dir
from ppx_desktop.session import events as ev
from ppx_desktop.session.worker import InferenceWorker


def recording(path, seconds: float = 12.0):
    audio = np.tile(synthetic_voice(2, seconds=2.0), int(np.ceil(seconds / 2)))[: int(seconds * 24000)]
    sf.write(str(path), audio, 24000, subtype="PCM_16")
    return path


@pytest.fixture
def myv(tiny_model_dir, tmp_path, capsys):
    """`voices add myv rec.wav`, as a user would."""
    rc = main(["voices", "add", "myv", str(recording(tmp_path / "rec.wav")), "--model-dir", str(tiny_model_dir),
               "--device", "cpu", "--yes-i-have-consent"])
    out = capsys.readouterr().out
    assert rc == 0 and "use it with --voice myv" in out
    assert (voices_dir() / "myv.pt").is_file()
    return "myv"


def test_offline_and_respond_talk_with_a_custom_voice_by_name(myv, tiny_model_dir, tmp_path, capsys):
    user = recording(tmp_path / "in.wav", 2.0)
    rc = main(["offline", "--model-dir", str(tiny_model_dir), "--voice", myv, "--input-wav", str(user),
               "--output-wav", str(tmp_path / "o.wav"), "--output-text", str(tmp_path / "o.json"), "--device", "cpu",
               "--seed", "1"])
    assert rc == 0, capsys.readouterr().err
    assert sf.info(str(tmp_path / "o.wav")).frames == sf.info(str(user)).frames
    rc = main(["respond", "--model-dir", str(tiny_model_dir), "--voice", myv, "--input-wav", str(user),
               "--output-wav", str(tmp_path / "r.wav"), "--output-text", str(tmp_path / "r.json"), "--device", "cpu",
               "--max-steps", "8", "--no-early-stop", "--greedy"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "voice myv, prompt ready" in out.out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["voice"] == "myv" and report["turns"][0]["steps"] == 8


def test_a_custom_voice_sounds_different_from_the_presets(myv, tiny_model_dir, tmp_path, capsys):
    """The name really selects the custom voice file (not a fallback to a preset)."""
    user = recording(tmp_path / "in.wav", 2.0)
    outs = {}
    for voice in (myv, "NATF0"):
        assert main(["offline", "--model-dir", str(tiny_model_dir), "--voice", voice, "--input-wav", str(user),
                     "--output-wav", str(tmp_path / f"{voice}.wav"), "--output-text", str(tmp_path / f"{voice}.json"),
                     "--device", "cpu", "--greedy"]) == 0
        outs[voice] = sf.read(str(tmp_path / f"{voice}.wav"))[0]
    assert not np.array_equal(outs[myv], outs["NATF0"])


def test_the_worker_lists_and_starts_a_custom_voice(myv, tiny_model_dir):
    events = []
    done = __import__("threading").Event()

    def on_event(e):
        events.append(e)
        if isinstance(e, (ev.TurnFinished, ev.ErrorEvent)):
            done.set()

    w = InferenceWorker(on_event)
    w.start()
    try:
        w.submit(ev.LoadModel(model_dir=tiny_model_dir, device="cpu"))
        w.submit(ev.StartConversation(myv, "Hello.", SamplingConfig.greedy(), 0))
        w.submit(ev.Respond(np.zeros(1920 * 3, np.float32), max_steps=4, early_stop=False, turn_id=1))
        assert done.wait(120)
    finally:
        assert w.shutdown(timeout=5.0)
    errors = [e for e in events if isinstance(e, ev.ErrorEvent)]
    assert not errors, errors
    loaded = next(e for e in events if isinstance(e, ev.ModelLoaded))
    assert "myv" in loaded.voices and loaded.custom_voices == ("myv",)
    assert loaded.voices[:4] == ("NATF0", "NATM0", "VARF0", "VARM0")
    ready = next(e for e in events if isinstance(e, ev.ConversationReady))
    assert ready.voice == "myv"
    assert next(e for e in events if isinstance(e, ev.TurnFinished)).steps == 4
