"""`ppx-desktop quant-check`: how close int8 or int4 weights stay to the full-precision model.

Teacher-forces a bundled spoken question (and the seconds of the answer) through the quantised
model and the bfloat16 one (which may stream layers from host memory on a small GPU), one model
on the GPU at a time, and prints per-stream top-1 agreement, the text and semantic-codebook KL
divergence and a plain verdict (engine/quantcheck.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quant", choices=["int8", "int4"], default="int4", help="the precision to check (default int4)")
    p.add_argument("--model-dir", type=Path, default=None, help="model directory (default: the downloaded model)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--voice", default=None, help="voice preset for the conversation (default: NATF2 or the first)")
    p.add_argument("--input-wav", type=Path, default=None, help="your own speech instead of the bundled question")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    import gc

    import torch
    from tqdm import tqdm

    from ..assets.resources import resources_dir
    from ..audio.files import read_audio
    from ..engine.model import load_model
    from ..engine.quantcheck import compare, conversation_frames, run_pass
    from .offline import DEFAULT_PROMPT
    from .respond import resolve_model_dir

    model_dir = resolve_model_dir(args.model_dir)
    clip = read_audio(args.input_wav or resources_dir() / "speech" / "quant_check.wav")
    frames = conversation_frames(clip)
    passes = {}
    for name, quant in (("reference", "none"), (args.quant, args.quant)):
        cuda = args.device == "cuda" or (args.device is None and torch.cuda.is_available())
        # On a GPU too small for bfloat16 the reference streams layers from host memory (slow, exact).
        model = load_model(model_dir, device=args.device, quant=quant, offload_layers=None if cuda else 0)
        voice_name = args.voice or ("NATF2" if "NATF2" in model.available_voices() else
                                    (model.available_voices() or [None])[0])
        voice = model.load_voice(voice_name) if voice_name else None
        tokens = model.tokenizer.encode_system_prompt(DEFAULT_PROMPT)
        label = "bfloat16 reference" if name == "reference" and cuda else f"{name} ({model.dtype})"
        with tqdm(total=len(frames), unit="frame", desc=label, disable=True if args.json else None) as bar:
            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            passes[name] = run_pass(model, voice, tokens, frames, forced=passes.get("reference"), progress=progress)
        del model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result = compare(passes["reference"], passes[args.quant], args.quant)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print(f"{args.quant} against the full-precision model, teacher-forced over {result.frames} frames "
          f"({result.frames * 0.08:.1f} s of conversation, voice {voice_name}):")
    print(f"  text: top-1 agreement {100 * result.text_agreement:.1f} %, KL {result.text_kl:.4f}")
    codebooks = ", ".join(f"{100 * a:.0f}" for a in result.audio_agreement)
    print(f"  agent audio codebooks: top-1 agreement {codebooks} % (semantic first), semantic KL "
          f"{result.semantic_kl:.4f}")
    print(f"verdict: {result.verdict}")
    return 0
