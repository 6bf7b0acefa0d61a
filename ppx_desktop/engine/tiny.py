"""Random tiny models in the official layout, for tests and the demo mode without a GPU.

`make_tiny_model(dir)` writes a complete model directory: LM and Mimi safetensors with the
official key names, `ppx_config.json`, a small trained SentencePiece model with ids 0..3 special
as in the real one, four preset voices as `.pt` files made by running the voice-prompt phase on
synthetic voices, and in `stt/` a tiny speech-to-text model in the layout of `kyutai/stt-1b-en_fr`
that shares the codec (tiny_stt.py). Unlike the reference's fixture model, the LM's context is
longer than the prompt phases, so the voice and the persona prompt really shape the outputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import save_weights
from .config import (
    FRAME_SIZE,
    LM_WEIGHTS,
    MIMI_WEIGHTS,
    PPX_CONFIG,
    SAMPLE_RATE,
    TEXT_TOKENIZER,
    VOICES_DIR,
    LMConfig,
    MimiConfig,
    MimiTransformerConfig,
    ModelConfig,
    PromptConfig,
    QuantizerConfig,
    SeanetConfig,
)
from .generator import Generator
from .lm import LMModel
from .mimi import Mimi
from .prompts import run_prompts, save_voice_file
from .sampling import SamplingConfig
from .tiny_stt import STT_DIR, make_tiny_stt

TINY_TEXT_CARD = 256
# A few of the released preset names, so the demo's voice picker and commands work as with the
# real model (one natural and one variety voice of each gender; each takes a prompt run to make).
TINY_VOICES = ["NATF0", "NATM0", "VARF0", "VARM0"]


def tiny_config(prompt: PromptConfig | None = None) -> ModelConfig:
    """The official structure at toy widths (Mimi as the reference fixtures, LM context 256)."""
    mimi = MimiConfig(
        seanet=SeanetConfig(dimension=32, n_filters=4),
        quantizer=QuantizerConfig(dimension=16, n_q=32, bins=32, input_dimension=32, output_dimension=32),
        transformer=MimiTransformerConfig(d_model=32, num_heads=2, num_layers=2, context=24, dim_feedforward=64,
                                          input_dimension=32, output_dimensions=(32,)),
    )
    lm = LMConfig(dim=64, text_card=TINY_TEXT_CARD, card=32, num_heads=4, num_layers=2, context=256,
                  depformer_dim=32, depformer_dim_feedforward=132, depformer_num_heads=4, depformer_num_layers=2,
                  depformer_context=16)
    return ModelConfig(mimi=mimi, lm=lm, prompt=prompt or PromptConfig(silence_tokens=(0,) * 8, sine_tokens=(0,) * 8))


def synthetic_voice(index: int, seconds: float = 1.6, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a harmonic tone with vibrato and syllable envelopes, plus breath
    noise. Female presets (F) sit higher than male ones (M); each preset has its own pitch."""
    rng = np.random.default_rng(seed * 1000 + index)
    name = TINY_VOICES[index % len(TINY_VOICES)]
    f0 = (190.0 if "F" in name else 105.0) * (1.0 + 0.06 * (index % 5))
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    tone = sum(np.sin(h * phase) / h for h in range(1, 8))
    syllables = 0.5 * (1 - np.cos(2 * np.pi * (3.0 + 0.4 * (index % 3)) * t))
    x = 0.25 * tone * syllables + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def _init_mimi(mimi: Mimi, gen: torch.Generator) -> None:
    """Random weights whose codebooks are fitted to the latents of a few signals, level by level,
    so that codes are spread out (a random codebook would map everything to one code)."""
    with torch.no_grad():
        for m in mimi.modules():
            scale = getattr(m, "scale", None)
            if isinstance(scale, torch.nn.Parameter):
                scale.copy_(torch.empty_like(scale).uniform_(0.05, 0.15, generator=gen))
        signals = [synthetic_voice(i, 2.0) for i in range(len(TINY_VOICES))]
        t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
        signals.append((0.3 * np.sin(2 * np.pi * (110 + 800 * t) * t)).astype(np.float32))
        latent = torch.cat([mimi.encode_latent(torch.from_numpy(s).view(1, 1, -1)) for s in signals], dim=-1)
        for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
            residual = rvq.input_proj(latent)[0].T  # [N, D]
            for codebook in rvq.codebooks:
                mean, std = residual.mean(0), residual.std(0)
                centroids = mean + std * torch.randn(codebook.embedding_sum.shape, generator=gen)
                usage = torch.empty(codebook.cluster_usage.shape).uniform_(0.5, 2.0, generator=gen)
                codebook.cluster_usage.copy_(usage)
                codebook.embedding_sum.copy_(centroids * usage[:, None])
                codebook._initialized.fill_(1.0)
                codebook.refresh()
                residual = residual - codebook.decode(codebook.encode(residual))


def _init_lm(lm: LMModel, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if name.endswith("alpha"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.startswith(("emb.", "text_emb.")):
                # Small stream embeddings, so the attention over the context matters.
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.startswith(("depformer_emb.", "depformer_text_emb.")):
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                bound = 1 / math.sqrt(p.shape[-1])
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))


def make_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Writes a complete random tiny model directory and returns its path."""
    from ..assets.tokenizer import train_tiny_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    config = tiny_config()
    with torch.random.fork_rng():  # module construction draws from the global RNG
        torch.manual_seed(seed)
        mimi = Mimi(config.mimi)
        lm = LMModel(config.lm)
    _init_mimi(mimi, gen)
    _init_lm(lm, gen)
    # The prompt's constant frames are this codec's codes of silence and of a 440 Hz tone.
    with torch.no_grad():
        n = np.arange(FRAME_SIZE)
        sine = torch.from_numpy((0.5 * np.sin(2 * np.pi * 440 * n / SAMPLE_RATE)).astype(np.float32))
        silence = mimi.encode(torch.zeros(1, 1, FRAME_SIZE))[0, :, 0].tolist()
        sine_codes = mimi.encode(sine.view(1, 1, -1))[0, :, 0].tolist()
    config = ModelConfig(mimi=config.mimi, lm=config.lm,
                         prompt=PromptConfig(silence_tokens=tuple(silence), sine_tokens=tuple(sine_codes)))
    config.validate()
    save_weights(mimi.state_dict(), out / MIMI_WEIGHTS)
    save_weights(lm.state_dict(), out / LM_WEIGHTS)
    train_tiny_tokenizer(out / TEXT_TOKENIZER, vocab_size=TINY_TEXT_CARD, seed=seed)
    (out / PPX_CONFIG).write_text(json.dumps(config.to_dict(), indent=1) + "\n", encoding="utf-8")
    make_voices(out / VOICES_DIR, mimi, lm, config, seed)
    make_tiny_stt(out / STT_DIR, mimi, seed)
    return out


def make_voices(voices_dir: Path, mimi: Mimi, lm: LMModel, config: ModelConfig, seed: int = 0) -> None:
    """Runs the voice-prompt phase on each synthetic preset voice and saves it as a `.pt` file."""
    from ..audio.files import frames, normalize_loudness
    from .prompts import VoicePrompt

    voices_dir.mkdir(parents=True, exist_ok=True)
    generator = Generator(lm, SamplingConfig.greedy())
    state = generator.init_state(1)
    with torch.no_grad():
        for i, name in enumerate(TINY_VOICES):
            audio = normalize_loudness(synthetic_voice(i, seed=seed))
            voice = VoicePrompt(name=name, frames=frames(audio, FRAME_SIZE))
            emb, cache = run_prompts(generator, state, config.prompt, mimi=mimi, voice=voice, silence_frames=0,
                                     collect_embeddings=True)
            save_voice_file(voices_dir / f"{name}.pt", emb, cache)
