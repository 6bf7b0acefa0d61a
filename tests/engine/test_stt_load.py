"""Loading speech-to-text directories: the reference's config format, its files, and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from testkit import FIXTURES

from ppx_desktop.engine.checkpoint import CheckpointError
from ppx_desktop.engine.config import ConfigError
from ppx_desktop.engine.stt import STTModel, stt_cache_bytes, stt_weight_bytes
from ppx_desktop.engine.stt_config import STTConfig, load_stt_config, released_stt_config
from ppx_desktop.engine.stt_load import STTError, load_stt

STT = FIXTURES / "stt"
FILES = ("config.json", "model.safetensors", "mimi-pytorch-e351c8d8@125.safetensors", "mimi_config.json",
         "tokenizer_tiny_stt.model")


@pytest.fixture
def stt_dir(tmp_path):
    d = tmp_path / "stt"
    d.mkdir()
    for name in FILES:
        shutil.copyfile(STT / name, d / name)
    return d


def edit_config(d, **changes):
    data = json.loads((d / "config.json").read_text())
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    (d / "config.json").write_text(json.dumps(data))


def test_config_reads_the_reference_format():
    config = load_stt_config(STT)
    assert config.lm.n_q == 32 and config.lm.dim == 64 and config.lm.context == 24
    assert config.mimi.num_codebooks == 32 and config.mimi.transformer.context == 24  # from mimi_config.json
    assert config.prefix_frames == 13 and config.flush_frames == 7
    assert config.temp_text == 0.0 and config.top_k_text == 50
    assert "depformer_dim" in config.ignored_keys  # read by the reference for the depformer it does not build


def test_released_config_is_a_1b_model():
    config = released_stt_config()
    params = sum(t.numel() for t in STTModel(config.lm, device="meta").state_dict().values())
    assert 0.9e9 < params < 1.1e9  # "about 1B parameters"
    assert config.prefix_frames == 0 and config.flush_frames == 7  # 0.5 s delay: ceil(6.25)
    assert stt_weight_bytes(config) == 2 * params
    assert stt_cache_bytes(config) == 2 * 16 * 750 * 2048 * 2  # 750 frames of keys and values in bf16


@pytest.mark.parametrize("changes, message", [
    pytest.param({"dep_q": 8}, "'dep_q' = 8 is not supported", id="depformer"),
    pytest.param({"norm": "layer_norm"}, "'norm'", id="norm"),
    pytest.param({"norm": ...}, "'norm' = 'layer_norm'", id="missing-key-is-reference-default"),
    pytest.param({"context": ...}, "'context' must be set", id="no-context"),
    pytest.param({"delays": [0, 0]}, "'delays' must hold 33", id="delays"),
    pytest.param({"card": 64}, "'card' \\(64\\) must equal", id="card"),
    pytest.param({"n_q": 40, "delays": [0] * 41}, "reads 40 codebooks but the codec has only 32", id="n_q"),
    pytest.param({"model_type": "tts"}, "not a speech-to-text model", id="model-type"),
    pytest.param({"fuser": {"sum": ["x"]}}, "'fuser'", id="conditioning"),
    pytest.param({"mimi_name": "../elsewhere.safetensors"}, "inside the model folder", id="path-escape"),
    pytest.param({"stt_config": {"audio_delay_seconds": "long"}}, "must be a number", id="bad-type"),
])
def test_config_errors_name_the_key(stt_dir, changes, message):
    edit_config(stt_dir, **changes)
    with pytest.raises(ConfigError, match=message):
        load_stt(stt_dir, device="cpu")


def test_unknown_keys_are_ignored_and_listed(stt_dir):
    edit_config(stt_dir, some_future_key=1)
    stt = load_stt(stt_dir, device="cpu")
    assert "some_future_key" in stt.config.ignored_keys


def test_broken_json_names_the_file(stt_dir):
    (stt_dir / "mimi_config.json").write_text("{nope")
    with pytest.raises(ConfigError, match="mimi_config.json: not readable as JSON"):
        load_stt(stt_dir, device="cpu")


@pytest.mark.parametrize("name", FILES[1:])
def test_missing_files_are_listed(stt_dir, name):
    (stt_dir / name).unlink()
    kind = ConfigError if name.endswith(".json") else STTError
    with pytest.raises(kind, match=name.replace(".", "\\.")):
        load_stt(stt_dir, device="cpu")


def test_not_a_model_dir(tmp_path):
    with pytest.raises(STTError, match="not found"):
        load_stt(tmp_path / "nothing")
    with pytest.raises(STTError, match="has no config.json"):
        load_stt(tmp_path)
    (tmp_path / "stt").mkdir()
    shutil.copyfile(STT / "config.json", tmp_path / "stt" / "config.json")
    with pytest.raises(STTError, match="stt/ folder"):
        load_stt(tmp_path)


def test_tokenizer_must_fit_the_text_card(stt_dir):
    edit_config(stt_dir, text_card=200)
    with pytest.raises(STTError, match="has 128 pieces but the model expects 200"):
        load_stt(stt_dir, device="cpu")


def test_header_checked_before_reading(stt_dir):
    sd = load_file(str(stt_dir / "model.safetensors"))
    sd["text_linear.weight"] = sd["text_linear.weight"][:100]
    del sd["extra_heads.3.weight"]
    sd["stray.weight"] = torch.zeros(1)
    save_file(sd, str(stt_dir / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_stt(stt_dir, device="cpu")
    message = str(err.value)
    assert "model.safetensors" in message and "extra_heads.3.weight" in message and "stray.weight" in message
    assert "text_linear.weight has shape [100, 64], expected [128, 64]" in message


def test_truncated_weights_say_download_again(stt_dir):
    path = stt_dir / "mimi-pytorch-e351c8d8@125.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated.*download it again"):
        load_stt(stt_dir, device="cpu")


def test_moshi_package_attention_names_load_the_same(stt_dir):
    """The current moshi package saves attention as `in_projs.0` / `out_projs.0`; its loader maps
    the official `in_proj_weight` / `out_proj.weight` to them. Both load here, to the same model."""
    ref = load_stt(stt_dir, device="cpu").model.state_dict()
    sd = load_file(str(stt_dir / "model.safetensors"))
    renamed = {k.replace("self_attn.in_proj_weight", "self_attn.in_projs.0.weight")
                .replace("self_attn.out_proj.weight", "self_attn.out_projs.0.weight"): v for k, v in sd.items()}
    assert renamed.keys() != sd.keys()
    save_file(renamed, str(stt_dir / "model.safetensors"))
    got = load_stt(stt_dir, device="cpu").model.state_dict()
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_tensors_the_reference_builds_but_never_runs_are_allowed(stt_dir):
    # Without depformer_multi_linear the reference builds one unused depformer input projection;
    # conditioners with no fuser build weights nothing reads.
    sd = load_file(str(stt_dir / "model.safetensors"))
    sd["depformer_in.0.weight"] = torch.zeros(32, 64)
    sd["condition_provider.conditioners.x.embed.weight"] = torch.zeros(3, 8)
    save_file(sd, str(stt_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_stt(stt_dir, device="cpu")
    edit_config(stt_dir, depformer_multi_linear=False, conditioners={"x": {"type": "lut"}})
    load_stt(stt_dir, device="cpu")


def test_bfloat16_load(stt_dir):
    stt = load_stt(stt_dir, device="cpu", dtype="bfloat16")
    assert stt.model.text_linear.weight.dtype == torch.bfloat16
    assert stt.mimi.quantizer.rvq_first.codebooks[0].embedding.dtype == torch.float32


def test_defaults_are_the_reference_loaders():
    config = STTConfig.from_dict({"n_q": 32, "card": 2048, "context": 10, "delays": [0] * 33, "norm": "rms_norm_f32",
                                  "gating": "silu", "positional_embedding": "rope", "dep_q": 0})
    assert config.weights_name == "model.safetensors" and config.tokenizer_name == "tokenizer_spm_32k_3.model"
    assert config.audio_delay_seconds == 5.0 and config.audio_silence_prefix_seconds == 1.0  # the script's defaults
    assert config.lm.dim == 128 and config.lm.hidden_scale == 4  # LMModel's keyword defaults
