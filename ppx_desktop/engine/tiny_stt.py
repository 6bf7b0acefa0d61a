"""A random tiny speech-to-text model in the layout of `kyutai/stt-1b-en_fr`, for tests and demos.

`make_tiny_stt(dir, mimi)` writes what the repository holds, at toy widths: `config.json` in the
reference loader's format, `model.safetensors` with the official key names, the Mimi weights under
the name the config gives, a small SentencePiece tokenizer, and (as a non-standard codec needs)
`mimi_config.json` in the reference's own codec format, named by `mimi_config_name`. The codec is
the tiny PersonaPlex model's own, as the released models share one Mimi.

Random weights emit random text; the text head favours the padding and end-of-padding tokens so
that the token stream has words and boundaries, as a real one has.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .checkpoint import save_weights
from .mimi import Mimi
from .stt import STTModel
from .stt_config import STT_CONFIG, load_stt_config, mimi_config_to_reference

STT_DIR = "stt"  # the tiny model directory's subfolder
TINY_STT_VOCAB = 128
_FILES = {"moshi_name": "model.safetensors", "mimi_name": "mimi-pytorch-e351c8d8@125.safetensors",
          "mimi_config_name": "mimi_config.json", "tokenizer_name": "tokenizer_tiny_stt.model"}


def tiny_stt_config_dict(mimi: Mimi) -> dict:
    """config.json of the tiny model: the released layout (32 codebooks, no depformer, four
    end-of-turn heads, zero delays, its sampling settings) at width 64 with a 24-frame context, and
    a one-second silence prefix (the released 1B model uses none) so the prefix is exercised too."""
    q = mimi.config.quantizer
    n_q = q.n_q
    return {
        **_FILES,
        "model_type": "stt",
        "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 1.0},
        "lm_gen_config": {"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
        "dim": 64, "text_card": TINY_STT_VOCAB, "existing_text_padding_id": 3, "n_q": n_q, "dep_q": 0,
        "card": q.bins, "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125, "causal": True,
        "layer_scale": None, "context": 24, "max_period": 100000, "gating": "silu", "norm": "rms_norm_f32",
        "positional_embedding": "rope", "depformer_multi_linear": True, "depformer_dim": 32,
        "depformer_num_heads": 4, "depformer_num_layers": 1, "depformer_pos_emb": "none",
        "extra_heads_num_heads": 4, "extra_heads_dim": 6, "delays": [0] * (n_q + 1), "fuser": None,
    }


def _init(model: STTModel, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.startswith(("emb.", "text_emb.")):
                # Small stream embeddings, so the context matters, not only the current frame.
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                bound = 1 / math.sqrt(p.shape[-1])
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))
        # Padding (3) and end of padding (0) win often, words in between.
        model.text_linear.weight[3] *= 7.0
        model.text_linear.weight[0] *= 2.0
        for head in model.extra_heads:
            head.weight.mul_(4.0)


def make_tiny_stt(out_dir: str | Path, mimi: Mimi, seed: int = 0) -> Path:
    """Writes a tiny random STT directory using `mimi` (its weights are copied) and returns its path."""
    from ..assets.tokenizer import train_tiny_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = tiny_stt_config_dict(mimi)
    (out / _FILES["mimi_config_name"]).write_text(
        json.dumps(mimi_config_to_reference(mimi.config), indent=1) + "\n", encoding="utf-8")
    (out / STT_CONFIG).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    config = load_stt_config(out)  # what we wrote must read back
    with torch.random.fork_rng():  # module construction draws from the global RNG
        torch.manual_seed(seed)
        model = STTModel(config.lm)
    _init(model, torch.Generator().manual_seed(10_000 + seed))
    save_weights(model.state_dict(), out / config.weights_name)
    save_weights(mimi.state_dict(), out / config.mimi_name)
    train_tiny_tokenizer(out / config.tokenizer_name, vocab_size=config.lm.text_card, seed=seed)
    return out
