"""Strict safetensors loading: clear errors for damaged or mismatched files, LM patch rules."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from testkit import FIXTURES

from ppx_desktop.engine.checkpoint import CheckpointError, lm_plan, load_weights, read_header
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.mimi import Mimi

MIMI = FIXTURES / "tiny_mimi.safetensors"
LM = FIXTURES / "tiny_lm.safetensors"


def test_loads_exact_values(tiny_config):
    mimi = Mimi(tiny_config.mimi, device="meta")
    load_weights(mimi, MIMI, dtype=torch.float32)
    ref = load_file(str(MIMI))
    assert all(torch.equal(v, ref[k]) for k, v in mimi.state_dict().items())
    assert not any(t.is_meta for t in mimi.buffers())  # derived codebook caches rebuilt too


def test_missing_file(tiny_config, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(Mimi(tiny_config.mimi, device="meta"), tmp_path / "nope.safetensors")


@pytest.mark.parametrize("cut", [4, 1000, -100])
def test_truncated_file(tiny_config, tmp_path, cut):
    data = MIMI.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut] if cut > 0 else data[:cut])
    with pytest.raises(CheckpointError, match="truncated|not a safetensors") as err:
        load_weights(Mimi(tiny_config.mimi, device="meta"), bad)
    assert "cut.safetensors" in str(err.value)


def test_not_safetensors(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{this is not json}" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_header(bad)


def _rewrite(tmp_path, mutate):
    sd = load_file(str(MIMI))
    mutate(sd)
    out = tmp_path / "mutated.safetensors"
    save_file(sd, str(out))
    return out


def test_missing_key_is_listed(tiny_config, tmp_path):
    path = _rewrite(tmp_path, lambda sd: sd.pop("decoder.model.0.conv.conv.bias"))
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): decoder.model.0.conv.conv.bias"):
        load_weights(Mimi(tiny_config.mimi, device="meta"), path)


def test_extra_key_is_listed(tiny_config, tmp_path):
    path = _rewrite(tmp_path, lambda sd: sd.update({"surprise.weight": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): surprise.weight"):
        load_weights(Mimi(tiny_config.mimi, device="meta"), path)


def test_wrong_shape_is_listed(tiny_config, tmp_path):
    key = "encoder.model.0.conv.conv.weight"
    path = _rewrite(tmp_path, lambda sd: sd.update({key: torch.zeros(3, 1, 7)}))
    with pytest.raises(CheckpointError, match=rf"{key} has shape \[3, 1, 7\], expected \[4, 1, 7\]"):
        load_weights(Mimi(tiny_config.mimi, device="meta"), path)


def test_lm_dtype_selection(tiny_config):
    lm = LMModel(tiny_config.lm, device="meta", dtype=torch.bfloat16)
    load_weights(lm, LM, dtype=torch.bfloat16, plan_fn=lm_plan)
    # Like the reference, every tensor (RMSNorm alphas included) takes the LM dtype.
    assert {t.dtype for t in lm.state_dict().values()} == {torch.bfloat16}


def test_eight_step_depformer_checkpoint_is_widened(tiny_config, tmp_path):
    """The reference's patches for Moshi-style 8-step depformers: repeat attention blocks and copy
    per-step weights of steps 0..7 to 8..15."""
    sd = load_file(str(LM))
    old = {}
    for k in list(sd):
        if "self_attn" in k and k.startswith("depformer."):
            sd[k] = sd[k][: sd[k].shape[0] // 2].clone()
            old[k] = sd[k]
        for group in ("gating", "linears", "depformer_in", "depformer_emb"):
            if any(f"{group}.{n}." in k for n in range(8, 16)):
                sd.pop(k)
    path = tmp_path / "eight.safetensors"
    save_file(sd, str(path))
    lm = LMModel(tiny_config.lm, device="meta")
    load_weights(lm, path, dtype=torch.float32, plan_fn=lm_plan)
    got = lm.state_dict()
    for k, v in old.items():
        assert torch.equal(got[k], torch.cat([v, v]))
    assert torch.equal(got["linears.12.weight"], sd["linears.4.weight"])
    assert torch.equal(got["depformer.layers.1.gating.9.linear_in.weight"],
                       sd["depformer.layers.1.gating.1.linear_in.weight"])
    assert torch.equal(got["depformer_emb.14.weight"], sd["depformer_emb.6.weight"])

    # No rule produces depformer_emb.7 (the reference would leave it uninitialised): an error.
    sd.pop("depformer_emb.7.weight")
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=r"missing key\(s\): depformer_emb.7.weight"):
        load_weights(LMModel(tiny_config.lm, device="meta"), path, dtype=torch.float32, plan_fn=lm_plan)
