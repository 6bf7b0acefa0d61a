"""Loading a speech-to-text model directory (the repository's own files) onto our engine.

Same discipline as the LM loader (model.py): the directory, config and files are checked first,
then each checkpoint's header against the modules' keys and shapes before any tensor is read,
and tensors are read one at a time from the memory-mapped file. Errors name the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import Plan, TensorInfo, load_weights
from .mimi import Mimi
from .model import resolve_device, resolve_dtype
from .stt import STTGenerator, STTModel
from .stt_config import STT_CONFIG, STT_REPO, STTConfig, load_stt_config


class STTError(ValueError):
    """The speech-to-text model directory cannot be used; the message says what to do."""


@dataclass
class LoadedSTT:
    config: STTConfig
    mimi: Mimi  # encodes `config.lm.n_q` codebooks per frame
    model: STTModel
    tokenizer: object  # TextTokenizer
    model_dir: Path
    device: torch.device
    dtype: torch.dtype

    def generator(self, greedy: bool = True, rng: torch.Generator | None = None) -> STTGenerator:
        return STTGenerator.for_config(self.model, self.config, greedy=greedy, rng=rng)


def stt_plan(model_shapes: dict[str, tuple[int, ...]], file_infos: dict[str, TensorInfo]) -> Plan:
    """Checkpoint key per model key: the official names (`self_attn.in_proj_weight`,
    `self_attn.out_proj.weight`), or those the current moshi package itself saves for attention
    (`in_projs.0.weight`, `out_projs.0.weight`), which its loader maps to the same tensors."""
    plan: Plan = {}
    for key in model_shapes:
        if key in file_infos:
            plan[key] = (key, None)
            continue
        for old, new in (("self_attn.in_proj_weight", "self_attn.in_projs.0.weight"),
                         ("self_attn.out_proj.weight", "self_attn.out_projs.0.weight")):
            if key.endswith(old) and key[: -len(old)] + new in file_infos:
                plan[key] = (key[: -len(old)] + new, None)
    return plan


def load_stt(model_dir: str | Path, device: str | None = None, dtype: str | torch.dtype | None = None,
             quant: str = "none") -> LoadedSTT:
    """Loads `DIR` holding `config.json`, the weights and tokenizer it names and the Mimi codec.

    `dtype`: the model's weights (default bfloat16 on CUDA, float32 on the CPU); Mimi runs in float32.
    `quant` ("none", "int8", "int4") quantises its linear layers while loading, as the LM's are.
    """
    from ..assets.tokenizer import TextTokenizer

    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise STTError(f"speech-to-text model directory not found: {model_dir}")
    if not (model_dir / STT_CONFIG).is_file():
        if (model_dir / "stt" / STT_CONFIG).is_file():
            raise STTError(f"{model_dir} holds a speech-to-text model in its stt/ folder: use {model_dir / 'stt'}")
        raise STTError(f"{model_dir} is not a speech-to-text model directory: it has no {STT_CONFIG}. Download "
                       f"{STT_REPO} (`ppx-desktop download --with-transcription`) or point at its folder")
    config = load_stt_config(model_dir)
    missing = [name for name in config.files if not (model_dir / name).is_file()]
    if missing:
        raise STTError(f"{model_dir} is not a complete speech-to-text model directory: missing "
                       f"{', '.join(missing)} (named by its {STT_CONFIG}). Download it again "
                       "(`ppx-desktop download --with-transcription`)")
    dev = resolve_device(device)
    model_dtype = resolve_dtype(dtype, dev)
    tokenizer = TextTokenizer.load(model_dir / config.tokenizer_name)
    if tokenizer.vocab_size != config.lm.text_card:
        raise STTError(f"{model_dir / config.tokenizer_name} has {tokenizer.vocab_size} pieces but the model "
                       f"expects {config.lm.text_card} ('text_card' in {model_dir / STT_CONFIG})")
    mimi = Mimi(config.mimi, device="meta")
    load_weights(mimi, model_dir / config.mimi_name, device=dev, dtype=torch.float32)
    model = STTModel(config.lm, device="meta", dtype=model_dtype)

    def unused(key: str) -> bool:
        return key in config.unused_weights or key.startswith(config.unused_weight_prefixes)

    if quant == "none":
        load_weights(model, model_dir / config.weights_name, device=dev, dtype=model_dtype, plan_fn=stt_plan,
                     allow_unused=unused)
    else:
        from .quant import check_quant, convert_for_quant, packing_for, quantizing_converter

        check_quant(quant, dev)
        target = STTModel(config.lm, device="meta", dtype=model_dtype)
        packing = packing_for(dev)
        qplan = convert_for_quant(target, quant, packing)
        load_weights(model, model_dir / config.weights_name, device=dev, dtype=model_dtype, plan_fn=stt_plan,
                     allow_unused=unused, convert=quantizing_converter(qplan, quant, model_dtype, packing),
                     target=target)
        model = target
    return LoadedSTT(config, mimi.eval(), model.eval(), tokenizer, model_dir, dev, model_dtype)
