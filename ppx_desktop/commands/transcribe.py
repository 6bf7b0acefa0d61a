"""`ppx-desktop transcribe`: one recording in, its words with start and end times out (JSON).

The speech-to-text path on its own, as `offline` checks the LM: the same words and times as
Kyutai's transcription script for a file (silence prefix, end flush, timestamp rules).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stt-model-dir", type=Path, default=None,
                   help="speech-to-text model directory: the files of kyutai/stt-1b-en_fr (config.json, its "
                        "weights, text tokenizer and Mimi), or DIR/stt of a make-tiny-model directory; default: "
                        "the one `ppx-desktop download --with-transcription` fetched")
    p.add_argument("--input-wav", type=Path, required=True, help="the recording (any rate, mono or stereo)")
    p.add_argument("--output-text", type=Path, required=True,
                   help="where to write the words: a JSON list of {word, start, end} (seconds)")
    p.add_argument("--greedy", action="store_true",
                   help="argmax decoding (the released model's own setting is greedy already)")
    p.add_argument("--seed", type=int, default=None, help="random seed, if the model's settings sample")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="model weights: default bfloat16 on cuda, float32 on cpu (Mimi always float32)")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..audio.files import read_audio
    from ..engine.stt_load import load_stt
    from ..engine.transcribe import transcribe_audio

    out = args.output_text
    if out.is_dir():
        raise FileNotFoundError(f"--output-text {out} is a folder; give a file name such as {out / 'words.json'}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out.parent}")
    audio = read_audio(args.input_wav)  # first: a bad input fails before the model loads
    model_dir = args.stt_model_dir
    if model_dir is None:
        from ..assets.stt_model import find_stt_dir
        from ..cli import UserError

        model_dir = find_stt_dir()
        if model_dir is None:
            raise UserError("no downloaded speech-to-text model found: run `ppx-desktop download "
                            "--with-transcription` first or pass --stt-model-dir")
    stt = load_stt(model_dir, device=args.device, dtype=args.dtype)
    rng = None
    if args.seed is not None:
        torch.manual_seed(args.seed)
        rng = torch.Generator(device=stt.device).manual_seed(args.seed)
    with tqdm(total=0, unit="frame", desc="transcribing", disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = transcribe_audio(stt, audio, greedy=args.greedy, rng=rng, progress=progress)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text(json.dumps([w.to_json() for w in result.words], ensure_ascii=False, indent=1) + "\n",
                   encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {len(result.words)} words to {out}")
    if result.words:
        print(" ".join(w.word for w in result.words))
    return 0
