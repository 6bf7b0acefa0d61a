"""Speech-to-text inside the frame: one encode feeds both models, one graph, PersonaPlex unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testkit import ForbidHostSync

from ppx_desktop.engine.config import FRAME_SIZE
from ppx_desktop.engine.framestep import FrameStep
from ppx_desktop.engine.generator import Generator
from ppx_desktop.engine.model import load_model
from ppx_desktop.engine.prompts import run_prompts
from ppx_desktop.engine.sampling import SamplingConfig
from ppx_desktop.engine.stt_load import load_stt
from ppx_desktop.engine.tiny import synthetic_voice
from ppx_desktop.engine.transcriber import Transcriber


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    return load_model(tiny_model_dir, device="cpu"), load_stt(tiny_model_dir / "stt", device="cpu")


@pytest.fixture(scope="module")
def speech():
    audio = np.concatenate([synthetic_voice(i, seconds=1.2) for i in range(3)])
    return [audio[i:i + FRAME_SIZE] for i in range(0, len(audio) - FRAME_SIZE + 1, FRAME_SIZE)]


def frames_with(model, frames, transcriber=None, **kw):
    gen = Generator(model.lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt, text_tokens=[5, 6])
    fs = FrameStep(model, gen, transcriber=transcriber, **kw)
    codec = fs.init_codec_state()
    fs.warmup(state, codec)
    return [fs(state, codec, f) for f in frames], fs


def test_the_frame_transcribes_with_the_shared_encode_and_leaves_personaplex_unchanged(models, speech):
    model, stt = models
    plain, _ = frames_with(model, speech, capture="off")
    with_stt, _ = frames_with(model, speech, Transcriber(stt), capture="off")
    assert [r.text_id for r in with_stt] == [r.text_id for r in plain]
    assert all(np.array_equal(a.pcm, b.pcm) for a, b in zip(with_stt, plain))
    # The same speech-to-text model stepped on its own over the same 32-codebook encode.
    gen = stt.generator(greedy=True)
    state, enc = gen.init_state(1), model.mimi.init_encoder_state(1)
    ref = []
    for frame in speech:
        codes = model.mimi.encode_step(torch.from_numpy(frame).view(1, 1, -1), enc, num_codebooks=32)
        out = gen.step(state, codes)
        ref.append((int(out.text[0]), float(out.end_of_turn[0, 2, 0])))
    assert [(r.user_text_id, pytest.approx(r.end_of_turn, abs=1e-6)) for r in with_stt] == ref
    assert all(0.0 <= r.end_of_turn <= 1.0 for r in with_stt)


def test_transcription_is_sync_free_and_captured_with_the_frame(models, speech):
    from ppx_desktop.engine.graphs import EagerGraphs

    model, stt = models
    eager, _ = frames_with(model, speech, Transcriber(stt), capture="off")
    graphs = EagerGraphs()
    captured, fs = frames_with(model, speech, Transcriber(stt), capture="cuda-graph", graphs=graphs)
    assert graphs.captures >= 1 and fs.fallback_reason is None
    assert [r.user_text_id for r in captured] == [r.user_text_id for r in eager]
    gen = Generator(model.lm, SamplingConfig.greedy())
    state = gen.init_state(1)
    run_prompts(gen, state, model.config.prompt)
    fs = FrameStep(model, gen, capture="off", transcriber=Transcriber(stt))
    codec = fs.init_codec_state()
    with ForbidHostSync():
        for frame in speech[:6]:
            fs(state, codec, frame)


@pytest.mark.slow
def test_the_frame_with_transcription_traces_as_one_graph(models, speech):
    import torch._dynamo

    model, stt = models
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager, _ = frames_with(model, speech[:12], Transcriber(stt), capture="off")
    results, _ = frames_with(model, speech[:12], Transcriber(stt), capture="compile",
                             compile_options={"backend": "eager"})
    variants = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert not torch._dynamo.utils.counters["graph_break"] and variants >= 1
    assert [r.user_text_id for r in results] == [r.user_text_id for r in eager]


def test_words_get_conversation_times(models):
    _, stt = models
    t = Transcriber(stt)
    ids = stt.tokenizer.encode("hello there friend")
    tokens = [0] + ids + [3, 3, 0]  # a word boundary, the pieces, padding, a boundary
    words = t.words(tokens, first_frame=100)
    assert " ".join(w.word.strip() for w in words) == t.text_of(tokens) == stt.tokenizer.decode(ids).strip()
    # Frame 101 of the conversation, less the model's delay.
    assert words[0].start == pytest.approx(101 / 12.5 - t.delay_seconds, abs=1e-3)
