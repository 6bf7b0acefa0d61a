"""Mimi codec against the reference's goldens (tests/fixtures/mimi_golden.safetensors, tiny random model).

Streaming goldens are compared with our streaming path and non-streaming with non-streaming: the
reference's KV-ring quirk makes them differ (README "Compare like with like").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from testkit import ForbidHostSync

from ppx_desktop.engine.config import FRAME_SIZE, MimiConfig
from ppx_desktop.engine.mimi import Mimi

FIXTURES = Path(__file__).parents[1] / "fixtures"
N_FRAMES = 40
TOL = dict(atol=1e-5, rtol=1e-5)  # fixtures README: observed float noise <= 5e-7


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "mimi_golden.safetensors"))


@pytest.fixture(scope="module")
def mimi(tiny_config) -> Mimi:
    model = Mimi(tiny_config.mimi)
    model.load_state_dict(load_file(str(FIXTURES / "tiny_mimi.safetensors")), strict=True)
    return model.eval()


def frames(wav: torch.Tensor):
    return [wav[..., i * FRAME_SIZE:(i + 1) * FRAME_SIZE] for i in range(wav.shape[-1] // FRAME_SIZE)]


class record_outputs:
    """Context manager recording what `obj.<name>(...)` returns, per call, for the given attributes."""

    def __init__(self, **targets):
        self.targets = targets  # label -> (object, method name)
        self.outputs = {label: [] for label in targets}

    def __enter__(self):
        for label, (obj, name) in self.targets.items():
            original = getattr(obj, name)

            def wrapper(*args, _original=original, _sink=self.outputs[label], **kwargs):
                out = _original(*args, **kwargs)
                _sink.append(out.clone())
                return out

            setattr(obj, name, wrapper)  # instance attribute shadows the method
        return self

    def __exit__(self, *exc):
        for obj, name in self.targets.values():
            delattr(obj, name)

    def cat(self, label: str) -> torch.Tensor:
        return torch.cat(self.outputs[label], dim=-1)


def stream_encode(mimi: Mimi, wav: torch.Tensor, state=None, exact_window: bool = False) -> torch.Tensor:
    state = mimi.init_encoder_state(wav.shape[0]) if state is None else state
    return torch.cat([mimi.encode_step(f, state, exact_window) for f in frames(wav)], dim=-1)


def test_streaming_encode(mimi, golden):
    taps = record_outputs(seanet=(mimi.encoder, "step"), transformer=(mimi.encoder_transformer, "forward"),
                          latent=(mimi.downsample.conv, "step"))
    with taps:
        codes = stream_encode(mimi, golden["waveform"])
    assert codes.dtype == torch.long and codes.shape == (1, 8, N_FRAMES)
    assert torch.equal(codes, golden["codes_streaming"])
    torch.testing.assert_close(taps.cat("seanet"), golden["enc_seanet_out_streaming"], **TOL)
    torch.testing.assert_close(taps.cat("transformer"), golden["enc_transformer_out_streaming"], **TOL)
    torch.testing.assert_close(taps.cat("latent"), golden["latent_streaming"], **TOL)


def test_nonstreaming_encode(mimi, golden):
    wav = golden["waveform"]
    seanet = mimi.encoder(wav)
    torch.testing.assert_close(seanet, golden["enc_seanet_out_nonstreaming"], **TOL)
    torch.testing.assert_close(mimi.encoder_transformer(seanet), golden["enc_transformer_out_nonstreaming"], **TOL)
    torch.testing.assert_close(mimi.encode_latent(wav), golden["latent_nonstreaming"], **TOL)
    assert torch.equal(mimi.encode(wav), golden["codes_nonstreaming"])


@pytest.mark.parametrize("length, n_frames", [(5765, 4), (5755, 3), (1000, 1)])
def test_nonstreaming_encode_pads_to_whole_frames(mimi, golden, length, n_frames):
    assert mimi.encode(golden["waveform"][..., :length]).shape == (1, 8, n_frames)


def test_streaming_decode(mimi, golden):
    state = mimi.init_decoder_state(1)
    taps = record_outputs(upsample=(mimi.upsample.convtr, "step"), transformer=(mimi.decoder_transformer, "forward"))
    with taps:
        chunks = [mimi.decode_step(golden["codes_streaming"][..., t:t + 1], state) for t in range(N_FRAMES)]
    assert all(c.shape == (1, 1, FRAME_SIZE) for c in chunks)
    torch.testing.assert_close(torch.cat(chunks, dim=-1), golden["pcm_decode_streaming"], **TOL)
    torch.testing.assert_close(taps.cat("upsample"), golden["dec_upsample_out_streaming"], **TOL)
    torch.testing.assert_close(taps.cat("transformer"), golden["dec_transformer_out_streaming"], **TOL)


def test_nonstreaming_decode(mimi, golden):
    codes = golden["codes_streaming"]
    latent = mimi.decode_latent(codes)
    torch.testing.assert_close(latent, golden["quantized_latent"], **TOL)
    upsampled = mimi.upsample.convtr(latent)
    torch.testing.assert_close(upsampled, golden["dec_upsample_out_nonstreaming"], **TOL)
    torch.testing.assert_close(mimi.decoder_transformer(upsampled), golden["dec_transformer_out_nonstreaming"], **TOL)
    torch.testing.assert_close(mimi.decode(codes), golden["pcm_decode_nonstreaming"], **TOL)
    torch.testing.assert_close(mimi.decode(golden["codes_nonstreaming"]), golden["pcm_decode_nonstreaming_codes"],
                               **TOL)


def test_streaming_batch_rows_are_independent(mimi, golden):
    wav = golden["waveform"][..., : 8 * FRAME_SIZE]
    codes = stream_encode(mimi, torch.cat([wav, torch.zeros_like(wav)]))
    assert torch.equal(codes[:1], golden["codes_streaming"][..., :8])
    assert torch.equal(codes[1:], stream_encode(mimi, torch.zeros_like(wav)))


def test_encoder_state_reset_clone_copy(mimi, golden):
    wav, expected = golden["waveform"], golden["codes_streaming"]
    state = mimi.init_encoder_state(1)
    noise = 0.1 * torch.randn(1, 1, 9 * FRAME_SIZE, generator=torch.Generator().manual_seed(0))
    stream_encode(mimi, noise, state)  # long enough to wrap the 12-slot KV ring
    state.reset()
    assert torch.equal(stream_encode(mimi, wav[..., : 20 * FRAME_SIZE], state), expected[..., :20])

    snapshot = state.clone()
    assert torch.equal(stream_encode(mimi, wav[..., 20 * FRAME_SIZE:], state), expected[..., 20:])
    other = mimi.init_encoder_state(1)
    other.copy_(snapshot)
    assert torch.equal(stream_encode(mimi, wav[..., 20 * FRAME_SIZE:], other), expected[..., 20:])
    assert torch.equal(stream_encode(mimi, wav[..., 20 * FRAME_SIZE:], snapshot), expected[..., 20:])


def test_decoder_state_reset(mimi, golden):
    codes, expected = golden["codes_streaming"], golden["pcm_decode_streaming"]
    state = mimi.init_decoder_state(1)
    for t in range(7):
        mimi.decode_step(codes[..., (5 * t) % N_FRAMES:][..., :1], state)
    state.reset()
    pcm = torch.cat([mimi.decode_step(codes[..., t:t + 1], state) for t in range(10)], dim=-1)
    torch.testing.assert_close(pcm, expected[..., : 10 * FRAME_SIZE], **TOL)


def test_exact_window_is_the_trained_window(mimi, golden):
    # With context 12 (25 Hz) the reference's ring drops a key from step 10 on; exact_window keeps the
    # full window, so it matches the non-streaming transformer for the first 12 steps (6 frames).
    wav = golden["waveform"][..., : 6 * FRAME_SIZE]
    outputs = {}
    for exact in (False, True):
        taps = record_outputs(out=(mimi.encoder_transformer, "forward"))
        with taps:
            stream_encode(mimi, wav, exact_window=exact)
        outputs[exact] = taps.cat("out")
    reference = golden["enc_transformer_out_nonstreaming"][..., :12]
    torch.testing.assert_close(outputs[True], reference, **TOL)
    torch.testing.assert_close(outputs[False][..., :10], reference[..., :10], **TOL)
    assert (outputs[False][..., 10:] - reference[..., 10:]).abs().max() > 1e-4


def test_state_dict_matches_official_checkpoint():
    manifest = json.loads((FIXTURES / "manifest_mimi.json").read_text())
    expected = {entry["name"]: tuple(entry["shape"]) for entry in manifest["keys"]}
    assert len(expected) == 318
    model = Mimi(MimiConfig(), device="meta")
    assert model.encoder_transformer.transformer.layers[0].self_attn.in_proj_weight.is_meta
    got = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert got == expected
    assert all(t.dtype == torch.float32 for t in model.state_dict().values())


# --- The streaming steps must not synchronise with the host (needed for CUDA graphs / compile). ---

def test_sync_detector_catches_syncs():
    t = torch.ones(3)
    for sync in (lambda: t.sum().item(), lambda: bool(t[0] > 0), lambda: int(t[0]), lambda: t[t > 0]):
        with pytest.raises(AssertionError, match="host sync|boolean-mask"), ForbidHostSync():
            sync()


def test_streaming_steps_have_no_host_sync(mimi, golden):
    enc, dec = mimi.init_encoder_state(1), mimi.init_decoder_state(1)
    with ForbidHostSync():
        for frame in frames(golden["waveform"][..., : 8 * FRAME_SIZE]):  # past the ring wrap
            mimi.decode_step(mimi.encode_step(frame, enc), dec)
        enc.reset()
        dec.reset()


def test_streaming_steps_run_on_meta(tiny_config):
    # Meta tensors have no data: any value read on the host (item, bool, tolist) would raise.
    model = Mimi(tiny_config.mimi, device="meta")
    enc, dec = model.init_encoder_state(2), model.init_decoder_state(2)
    for _ in range(2):
        pcm = model.decode_step(model.encode_step(torch.zeros(2, 1, FRAME_SIZE, device="meta"), enc), dec)
    assert pcm.shape == (2, 1, FRAME_SIZE) and pcm.is_meta


@pytest.mark.slow
def test_streaming_steps_compile_fullgraph(mimi, golden):
    # backend="eager": Dynamo traces the whole step as one graph (fullgraph fails on any graph
    # break, e.g. a host sync) without paying for Inductor code generation.
    encode = torch.compile(mimi.encode_step, fullgraph=True, backend="eager")
    decode = torch.compile(mimi.decode_step, fullgraph=True, backend="eager")
    enc, dec = mimi.init_encoder_state(1), mimi.init_decoder_state(1)
    codes, pcm = [], []
    for t, frame in enumerate(frames(golden["waveform"][..., : 8 * FRAME_SIZE])):
        codes.append(encode(frame, enc))
        pcm.append(decode(golden["codes_streaming"][..., t:t + 1], dec))
    assert torch.equal(torch.cat(codes, dim=-1), golden["codes_streaming"][..., :8])
    torch.testing.assert_close(torch.cat(pcm, dim=-1), golden["pcm_decode_streaming"][..., : 8 * FRAME_SIZE], **TOL)


# --- One encode for two models: the speech-to-text model reads 32 codebooks, PersonaPlex 8. ---


@pytest.mark.parametrize("exact_window", [pytest.param(False, id="personaplex-window"),
                                          pytest.param(True, id="stt-window")])
def test_shared_32_codebook_encode_gives_personaplex_its_codes(mimi, golden, exact_window):
    """Residual quantisation: level k only quantises what levels 0..k-1 left, so the first 8 codes
    of a 32-codebook encode are exactly an 8-codebook encode, here the reference's own codes."""
    state32, state8 = mimi.init_encoder_state(1), mimi.init_encoder_state(1)
    wav = golden["waveform"]
    shared, own = [], []
    for frame in frames(wav):
        shared.append(mimi.encode_step(frame, state32, exact_window, num_codebooks=32))
        own.append(mimi.encode_step(frame, state8, exact_window))  # the LM path: the configured 8
    shared, own = torch.cat(shared, -1), torch.cat(own, -1)
    assert shared.shape == (1, 32, N_FRAMES) and own.shape == (1, 8, N_FRAMES)
    assert torch.equal(shared[:, :8], own)
    if not exact_window:
        assert torch.equal(own, golden["codes_streaming"])
    assert len(set(shared[0, 8:].flatten().tolist())) > 8  # the extra levels carry codes of their own
    whole = mimi.encode(wav, num_codebooks=32)
    assert torch.equal(whole[:, :8], mimi.encode(wav))


def test_encode_refuses_more_codebooks_than_the_codec_has(mimi):
    with pytest.raises(ValueError, match="has 32"):
        mimi.encode(torch.zeros(1, 1, FRAME_SIZE), num_codebooks=33)
