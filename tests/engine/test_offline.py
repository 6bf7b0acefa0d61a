"""The offline flow end to end: parity with the reference's sessions, the tiny model, bad input."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import soundfile
import torch
from testkit import FIXTURES, load_golden, tiny_config_dict

from ppx_desktop.cli import main
from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.config import LM_WEIGHTS, TEXT_TOKENIZER, ModelConfig
from ppx_desktop.engine.generator import Generator, GeneratorOptions
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.mimi import Mimi
from ppx_desktop.engine.model import LoadedModel, ModelError, load_model, resolve_device
from ppx_desktop.engine.offline import run_offline
from ppx_desktop.engine.prompts import VoiceError, load_voice_audio, load_voice_file, run_prompts, save_voice_file
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.tiny import TINY_VOICES, make_tiny_model, synthetic_voice

GREEDY = SamplingConfig.greedy()


@pytest.fixture(scope="module")
def fixture_model() -> LoadedModel:
    """The reference fixtures' tiny Mimi and LM. Their sessions used a fake tokenizer, so we do too."""
    config = ModelConfig.from_dict(tiny_config_dict())
    mimi, lm = Mimi(config.mimi, device="meta"), LMModel(config.lm, device="meta")
    load_weights(mimi, FIXTURES / "tiny_mimi.safetensors", dtype=torch.float32)
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", dtype=torch.float32, plan_fn=lm_plan)
    pieces = types.SimpleNamespace(piece_text=lambda i: {0: "EPAD", 3: "PAD"}.get(i, f" t{i}"))
    return LoadedModel(config, mimi.eval(), lm.eval(), pieces, FIXTURES, torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("session", ["A", "B", "C"])
def test_reference_sessions_end_to_end(fixture_model, session):
    g = load_golden(f"session_{session}.safetensors")
    voice = load_voice_file(FIXTURES / "tiny_voice.pt") if session == "B" else load_voice_audio(
        FIXTURES / "tiny_voice.wav")
    text = g["text_prompt_tokens"].tolist() if "text_prompt_tokens" in g else []
    result = run_offline(fixture_model, g["user_audio"][0].numpy(), voice=voice, text_tokens=text, sampling=GREEDY)
    assert result.text_ids == g["user_text_tokens"].tolist()
    np.testing.assert_allclose(result.pcm, g["output_pcm"].numpy(), atol=1e-4, rtol=0)
    assert len(result.pcm) == g["user_audio"].shape[-1]


def test_wav_voice_prompt_state_matches_reference(fixture_model):
    g = load_golden("session_A.safetensors")
    gen = Generator(fixture_model.lm, GREEDY, GeneratorOptions())
    state = gen.init_state(1)
    voice = load_voice_audio(FIXTURES / "tiny_voice.wav")
    run_prompts(gen, state, fixture_model.config.prompt, mimi=fixture_model.mimi, voice=voice,
                text_tokens=g["text_prompt_tokens"].tolist())
    assert torch.equal(state.cache, g["lmgen_cache_after_prompts"])
    assert state.offset == int(g["lmgen_offset_after_prompts"][0])


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=3)


@pytest.fixture(scope="module")
def user_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "user.wav"
    audio = np.concatenate([synthetic_voice(5, 0.8), np.zeros(9600, np.float32)])
    soundfile.write(path, audio, 24000, subtype="PCM_16")
    return path


def offline(tiny_dir, user_wav, out_dir, *extra):
    code = main(["offline", "--model-dir", str(tiny_dir), "--input-wav", str(user_wav),
                 "--output-wav", str(out_dir / "out.wav"), "--output-text", str(out_dir / "out.json"), *extra])
    return code


def test_tiny_model_directory(tiny_dir):
    model = load_model(tiny_dir)
    assert model.available_voices() == sorted(TINY_VOICES)
    assert model.tokenizer.vocab_size == model.config.lm.text_card
    # Its context outlasts the prompts, so voices and prompts reach the conversation.
    voice = model.load_voice("NATF0")
    assert voice.num_frames + 12 + 40 < model.config.lm.context


def test_offline_command_end_to_end(tiny_dir, user_wav, tmp_path, capsys):
    assert offline(tiny_dir, user_wav, tmp_path, "--voice", "NATM0", "--greedy", "--text-prompt",
                   "You enjoy having a good conversation.") == 0
    pcm, rate = soundfile.read(tmp_path / "out.wav", dtype="int16")
    info = soundfile.info(tmp_path / "out.wav")
    assert rate == 24000 and info.channels == 1 and info.subtype == "PCM_16"
    assert len(pcm) == soundfile.info(user_wav).frames
    assert np.abs(pcm).max() > 0
    text = json.loads((tmp_path / "out.json").read_text())
    assert len(text) == -(-len(pcm) // 1920) and all(isinstance(t, str) for t in text)
    assert "wrote" in capsys.readouterr().out


def test_voice_and_prompt_shape_the_answer(tiny_dir, user_wav):
    model = load_model(tiny_dir)
    audio = soundfile.read(user_wav, dtype="float32")[0]

    def answer(voice, prompt):
        res = run_offline(model, audio, voice=model.load_voice(voice),
                          text_tokens=model.tokenizer.encode_system_prompt(prompt), sampling=GREEDY)
        return res.text_ids, res.pcm

    base = answer("NATF0", "You are a teacher.")
    assert base[0] == answer("NATF0", "You are a teacher.")[0]  # deterministic
    other_voice, other_prompt = answer("VARM0", "You are a teacher."), answer("NATF0", "You sell insurance.")
    assert not np.allclose(base[1], other_voice[1])
    assert not np.allclose(base[1], other_prompt[1])


def test_pt_replay_equals_wav_prompt(tiny_dir, user_wav, tmp_path):
    model = load_model(tiny_dir)
    wav = tmp_path / "me.wav"
    soundfile.write(wav, synthetic_voice(7, 1.5), 24000)
    gen = Generator(model.lm, GREEDY)
    emb, cache = run_prompts(gen, gen.init_state(1), model.config.prompt, mimi=model.mimi,
                             voice=load_voice_audio(wav), silence_frames=0, collect_embeddings=True)
    save_voice_file(tmp_path / "me.pt", emb, cache)
    audio = soundfile.read(user_wav, dtype="float32")[0]
    a = run_offline(model, audio, voice=model.load_voice(str(wav)), text_tokens=[5, 6], sampling=GREEDY)
    b = run_offline(model, audio, voice=model.load_voice(str(tmp_path / "me.pt")), text_tokens=[5, 6],
                    sampling=GREEDY)
    assert a.text_ids == b.text_ids
    np.testing.assert_array_equal(a.pcm, b.pcm)


def test_stereo_48k_input_is_accepted(tiny_dir, tmp_path):
    stereo = np.stack([synthetic_voice(1, 0.5, seed=1)] * 2, axis=1)
    stereo = np.repeat(stereo, 2, axis=0)  # crude 48 kHz
    wav = tmp_path / "stereo48.wav"
    soundfile.write(wav, stereo, 48000)
    assert offline(tiny_dir, wav, tmp_path, "--voice", "VARF0", "--greedy", "--seed", "1") == 0
    assert soundfile.info(tmp_path / "out.wav").frames == len(stereo) // 2


def test_unknown_voice_lists_available(tiny_dir, user_wav, tmp_path, capsys):
    assert offline(tiny_dir, user_wav, tmp_path, "--voice", "NOBODY") == 1
    err = capsys.readouterr().err
    assert "unknown voice 'NOBODY'" in err and "NATF0" in err and "VARM0" in err
    assert not (tmp_path / "out.wav").exists()


def test_non_audio_input_is_a_clear_error(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    assert offline(tiny_dir, bad, tmp_path, "--voice", "NATF0") == 1
    assert "notes.wav" in capsys.readouterr().err
    assert offline(tiny_dir, tmp_path / "missing.wav", tmp_path, "--voice", "NATF0") == 1
    assert "missing.wav" in capsys.readouterr().err


class _Payload:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_malicious_voice_file_is_refused(tiny_dir, user_wav, tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"embeddings": torch.zeros(3, 1, 1, 64), "cache": _Payload()}, evil)
    with pytest.raises(VoiceError, match="refused"):
        load_voice_file(evil)
    assert offline(tiny_dir, user_wav, tmp_path, "--voice", str(evil)) == 1
    assert "refused" in capsys.readouterr().err


def test_missing_tokenizer_and_bad_weights(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / TEXT_TOKENIZER).unlink()
    with pytest.raises(ModelError, match=TEXT_TOKENIZER):
        load_model(broken)
    shutil.copy(tiny_dir / TEXT_TOKENIZER, broken / TEXT_TOKENIZER)
    data = (broken / LM_WEIGHTS).read_bytes()
    (broken / LM_WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_model(broken)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda(tiny_dir, user_wav, tmp_path, capsys):
    with pytest.raises(ModelError, match="CUDA was requested"):
        resolve_device("cuda")
    assert offline(tiny_dir, user_wav, tmp_path, "--voice", "NATF0", "--device", "cuda") == 1
    assert "--device cpu" in capsys.readouterr().err
