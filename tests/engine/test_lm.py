"""Parity of the language model and the streaming generator with the reference's goldens."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from testkit import FIXTURES, ForbidHostSync, load_golden

from ppx_desktop.engine.checkpoint import lm_plan, load_weights
from ppx_desktop.engine.config import LMConfig
from ppx_desktop.engine.generator import Generator, GeneratorOptions
from ppx_desktop.engine.lm import LMModel
from ppx_desktop.engine.sampling import SamplingConfig

REFERENCE_WORK = GeneratorOptions(skip_forced_depformer=False, skip_forced_frames=False)


@pytest.fixture(scope="module")
def tiny_lm(tiny_config) -> LMModel:
    lm = LMModel(tiny_config.lm, device="meta")
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", device="cpu", dtype=torch.float32, plan_fn=lm_plan)
    return lm.eval()


def test_full_size_lm_consumes_every_manifest_key():
    manifest = json.loads((FIXTURES / "manifest_personaplex_lm.json").read_text())
    lm = LMModel(LMConfig(), device="meta", dtype=torch.bfloat16)
    ours = {k: list(v.shape) for k, v in lm.state_dict().items()}
    theirs = {k["name"]: k["shape"] for k in manifest["keys"]}
    assert len(theirs) == manifest["num_keys"] == 475
    assert ours == theirs
    assert sum(v.numel() for v in lm.state_dict().values()) == manifest["num_params"]


def test_teacher_forced_logits(tiny_lm):
    g = load_golden("lm_teacher_forced.safetensors")
    tokens = g["tokens"]
    gen = Generator(tiny_lm, SamplingConfig.greedy(), REFERENCE_WORK)
    state = gen.init_state(1)
    text_logits, audio_logits, outs = [], [], []
    for t in range(tokens.shape[-1]):
        out = gen.step(state, user=tokens[:, 9:17, t:t + 1], agent=tokens[:, 1:9, t:t + 1],
                       text=int(tokens[0, 0, t]), return_logits=True)
        if t == 0:
            assert out is None
            continue
        text_logits.append(out.text_logits[0])
        audio_logits.append(out.audio_logits[0])
        if out.tokens is not None:
            outs.append(out.tokens[0, :, 0])
    torch.testing.assert_close(torch.stack(text_logits), g["text_logits"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.stack(audio_logits), g["audio_logits"], atol=1e-5, rtol=1e-4)
    assert torch.equal(torch.stack(outs), g["out_tokens"])


def replay_session(gen: Generator, g: dict[str, torch.Tensor], return_logits: bool = True):
    """Drives the generator with a session's recorded LMGen calls; yields (index, output)."""
    state = gen.init_state(1)
    phases = g["step_phase"].tolist()
    kinds = g["step_kind"].tolist()
    emb_index = 0
    for i, phase in enumerate(phases):
        if i > 0 and phases[i - 1] == 0 and phase != 0:
            state.reset()  # session start after the warmup
        if kinds[i] == 1:
            out = gen.step_embeddings(state, g["voice_prompt_embeddings"][emb_index].view(1, 1, -1),
                                      return_logits=return_logits)
            emb_index += 1
            if i + 1 < len(phases) and kinds[i + 1] != 1:
                state.cache.copy_(g["voice_prompt_cache"])
        else:
            user = g["step_input_tokens"][i].view(1, 8, 1) if g["step_input_tokens_given"][i] else None
            agent = g["step_moshi_tokens"][i].view(1, 8, 1) if g["step_moshi_tokens_given"][i] else None
            text = int(g["step_text_token"][i]) if g["step_text_token_given"][i] else None
            out = gen.step(state, user=user, agent=agent, text=text, return_logits=return_logits)
        assert state.offset == int(g["step_offset_after"][i]), i
        if i + 1 < len(phases) and phase in (1, 2, 3, 4) and phases[i + 1] == 5:
            yield "after_prompts", state
        yield i, out


@pytest.mark.parametrize("session", ["A", "B", "C"])
def test_session_replay_matches_reference(tiny_lm, session):
    g = load_golden(f"session_{session}.safetensors")
    gen = Generator(tiny_lm, SamplingConfig.greedy(), REFERENCE_WORK)
    for i, out in replay_session(gen, g):
        if i == "after_prompts":
            assert torch.equal(out.cache, g["lmgen_cache_after_prompts"])
            assert torch.equal(out.provided, g["lmgen_provided_after_prompts"])
            assert out.offset == int(g["lmgen_offset_after_prompts"][0])
            continue
        assert (out is not None) == bool(g["step_has_logits"][i]), i
        if out is None:
            continue
        assert (out.tokens is not None) == bool(g["step_out_valid"][i]), i
        if out.tokens is not None:
            assert torch.equal(out.tokens[0, :, 0], g["step_out_tokens"][i]), i
        torch.testing.assert_close(out.text_logits[0], g["step_text_logits"][i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out.audio_logits[0], g["step_audio_logits"][i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("session", ["A", "C"])
def test_skipping_discarded_work_keeps_greedy_tokens(tiny_lm, session):
    g = load_golden(f"session_{session}.safetensors")
    gen = Generator(tiny_lm, SamplingConfig.greedy(), GeneratorOptions())
    user_tokens = []
    for i, out in replay_session(gen, g, return_logits=False):
        if i == "after_prompts" or out is None or out.tokens is None:
            continue
        assert torch.equal(out.tokens[0, :, 0], g["step_out_tokens"][i]), i
        if int(g["step_phase"][i]) == 5:
            user_tokens.append(out.tokens[0, :, 0])
    assert torch.equal(torch.stack(user_tokens), g["user_out_tokens"])


def test_snapshot_restore_reproduces_the_continuation(tiny_lm):
    g = load_golden("session_A.safetensors")
    gen = Generator(tiny_lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    user = g["user_codes"]
    for t in range(3):
        gen.step(state, user=user[:, :, t:t + 1])
    snap = state.snapshot()
    first = [gen.step(state, user=user[:, :, t:t + 1]).tokens for t in range(3, 8)]
    state.restore(snap)
    second = [gen.step(state, user=user[:, :, t:t + 1]).tokens for t in range(3, 8)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_seeded_sampling_is_reproducible(tiny_lm):
    sampling = SamplingConfig(top_k_audio=10, top_k_text=5)
    results = []
    for _ in range(2):
        rng = torch.Generator().manual_seed(7)
        gen = Generator(tiny_lm, sampling, rng=rng)
        state = gen.init_state(1)
        toks = []
        for t in range(12):
            out = gen.step(state, user=torch.full((1, 8, 1), t % 32))
            if out is not None and out.tokens is not None:
                toks.append(out.tokens)
        results.append(torch.cat(toks, dim=-1))
    assert torch.equal(results[0], results[1])
    assert results[0][:, 1:9].unique().numel() > 1  # sampling, not a constant


def test_reading_only_the_written_cache_changes_nothing(tiny_lm):
    """Attention over the written part of the ring (GeneratorOptions.kv_buckets) equals attention
    over the whole masked ring, through the prompts and past the point where the ring wraps."""
    g = load_golden("session_C.safetensors")
    whole = Generator(tiny_lm, SamplingConfig.greedy(), dataclasses.replace(REFERENCE_WORK, kv_buckets=0))
    part = Generator(tiny_lm, SamplingConfig.greedy(), REFERENCE_WORK)
    assert part.options.kv_buckets == 4  # the default: the 16-slot tiny ring is read in parts of 4
    limits = []
    kv_limit = part.kv_limit
    part.kv_limit = lambda state, tokens=1: limits.append(kv_limit(state, tokens)) or limits[-1]
    for (i, a), (_, b) in zip(replay_session(whole, g), replay_session(part, g)):
        if i == "after_prompts":
            continue
        assert (a is None) == (b is None)
        if a is None:
            continue
        torch.testing.assert_close(b.text_logits, a.text_logits, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(b.audio_logits, a.audio_logits, atol=1e-6, rtol=1e-5)
        if a.tokens is not None:
            assert torch.equal(a.tokens, b.tokens), i
    assert limits[0] == 4 and {4, 8, 12, None} == set(limits)
    assert limits.index(None) > limits.index(12) and limits[-1] is None  # wrapped: the whole ring


def test_kv_limits_ahead(tiny_lm):
    gen = Generator(tiny_lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    assert gen.kv_limits_ahead(state) == [4, 8, 12, None]  # offset 0: nothing written yet
    state.offset = 9  # 8 keys written, the next call writes the 9th
    assert gen.kv_limit(state) == 12 and gen.kv_limits_ahead(state) == [12, None]
    state.offset = 16
    assert gen.kv_limit(state) is None and gen.kv_limits_ahead(state) == [None]
    with pytest.raises(ValueError, match="kv_limit"):
        tiny_lm.transformer.context(1, "cpu", gen.init_state(1).lm, kv_limit=17)


def _sampled_generator(lm) -> Generator:
    return Generator(lm, SamplingConfig(top_k_audio=8, top_k_text=8), rng=torch.Generator().manual_seed(0))


def test_frame_step_has_no_host_sync(tiny_lm):
    # The whole frame step: bookkeeping, temporal pass, text sampling, depformer loop with sampling.
    gen = _sampled_generator(tiny_lm)
    state = gen.init_state(1)
    user = torch.zeros(1, 8, 1, dtype=torch.long)
    with ForbidHostSync():
        for _ in range(20):  # past the tiny context (16): the ring wraps
            gen.step(state, user=user, return_logits=True)
        gen.step(state, user=user, agent=user, text=3)  # a fully forced (prompt) frame


def test_frame_step_runs_on_meta(tiny_config):
    # Meta tensors hold no values: reading one on the host (item, bool, int, tolist) raises.
    gen = _sampled_generator(LMModel(tiny_config.lm, device="meta"))
    gen.rng = None
    state = gen.init_state(2)
    for _ in range(4):
        out = gen.step(state, user=torch.zeros(2, 8, 1, dtype=torch.long, device="meta"))
    assert out.tokens.shape == (2, 17, 1) and out.tokens.is_meta


@pytest.mark.slow
def test_model_step_compiles_fullgraph(tiny_lm):
    # fullgraph fails on any graph break (a host sync, data-dependent control flow); backend
    # "eager" checks exactly that without paying for code generation.
    gen_ref, gen = Generator(tiny_lm, SamplingConfig.greedy()), Generator(tiny_lm, SamplingConfig.greedy())
    gen._model_step = torch.compile(gen._model_step, fullgraph=True, backend="eager")
    s_ref, s = gen_ref.init_state(1), gen.init_state(1)
    for t in range(6):
        user = torch.full((1, 8, 1), t)
        a, b = gen_ref.step(s_ref, user=user), gen.step(s, user=user)
        if a is not None and a.tokens is not None:
            assert torch.equal(a.tokens, b.tokens)
