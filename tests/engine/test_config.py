"""Model configuration: release defaults, ppx_config.json parsing, clear errors naming the key."""

from __future__ import annotations

import json

import pytest
from testkit import tiny_config_dict

from ppx_desktop.engine.config import PPX_CONFIG, ConfigError, ModelConfig, load_model_config


def test_release_defaults():
    cfg = ModelConfig()
    cfg.validate()
    lm = cfg.lm
    assert (lm.dim, lm.num_layers, lm.context, lm.dep_q, lm.text_card) == (4096, 32, 3000, 16, 32000)
    assert cfg.lm.hidden_dim == 11264 and cfg.lm.depformer_hidden_dim == 2816
    assert cfg.mimi.seanet.hop_length == 960 and cfg.mimi.resample_stride == 2 and cfg.mimi.num_codebooks == 8
    assert cfg.prompt.silence_tokens == (948, 243, 1178, 546, 1736, 1030, 1978, 2008)


def test_missing_file_means_release(tmp_path):
    assert load_model_config(tmp_path) == ModelConfig()


def test_missing_keys_mean_release_values(tmp_path):
    (tmp_path / PPX_CONFIG).write_text(json.dumps({"format": 1, "lm": {"context": 500}}))
    cfg = load_model_config(tmp_path)
    assert cfg.lm.context == 500 and cfg.lm.dim == 4096 and cfg.mimi == ModelConfig().mimi


def test_round_trip_of_the_tiny_config():
    cfg = ModelConfig.from_dict(tiny_config_dict())
    assert cfg.lm.hidden_dim == 176 and cfg.lm.depformer_hidden_dim == 88
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("patch, message", [
    pytest.param({"lm": {"dimm": 64}}, "'lm': unknown key(s) 'dimm'", id="unknown-lm-key"),
    pytest.param({"mimi": {"seanet": {"n_filter": 4}}}, "'mimi.seanet': unknown key(s) 'n_filter'",
                 id="unknown-seanet-key"),
    pytest.param({"extra": 1}, "unknown key(s) 'extra'", id="unknown-top-key"),
    pytest.param({"format": 2}, "'format' is 2", id="format"),
    pytest.param({"lm": {"num_layers": "two"}}, "key 'num_layers' must be int", id="wrong-type"),
    pytest.param({"lm": {"num_layers": 0}}, "key 'num_layers' must be positive", id="non-positive"),
    pytest.param({"lm": {"context": True}}, "key 'context' must be int", id="bool-for-int"),
    pytest.param({"lm": {"gating": "gelu"}}, "key 'gating' = 'gelu' is not supported", id="unsupported"),
    pytest.param({"lm": {"delays": [0, 1]}}, "'lm.delays' must hold 17", id="delays"),
    pytest.param({"lm": {"card": 64}}, "'lm.card' (64) must equal 'mimi.quantizer.bins'", id="card-vs-bins"),
    pytest.param({"prompt": {"silence_tokens": [1, 2]}}, "'prompt.silence_tokens' must hold 8", id="prompt-len"),
    pytest.param({"mimi": []}, "'mimi': expected a JSON object", id="not-an-object"),
])
def test_bad_config_names_the_key(tmp_path, patch, message):
    data = tiny_config_dict()
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            for k2, v2 in value.items():
                if isinstance(v2, dict):
                    data[key][k2].update(v2)
                else:
                    data[key][k2] = v2
        else:
            data[key] = value
    (tmp_path / PPX_CONFIG).write_text(json.dumps(data))
    with pytest.raises(ConfigError) as err:
        load_model_config(tmp_path)
    assert message in str(err.value)
    assert PPX_CONFIG in str(err.value)


def test_unreadable_json(tmp_path):
    (tmp_path / PPX_CONFIG).write_text("{not json")
    with pytest.raises(ConfigError, match="not readable as JSON"):
        load_model_config(tmp_path)
