"""`ppx-desktop offline`: WAV in, WAV and text out, like the reference's `moshi.offline`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import options

DEFAULT_PROMPT = ("You are a wise and friendly teacher. Answer questions or provide advice in a clear and "
                  "engaging way.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, default=None,
                   help="model directory (layout of nvidia/personaplex-7b-v1, or one made by make-tiny-model); "
                        "default: the model `ppx-desktop download` fetched")
    p.add_argument("--voice", required=True,
                   help="voice preset name (DIR/voices/NAME.pt), or a path to a .pt voice file or a WAV")
    p.add_argument("--text-prompt", default=DEFAULT_PROMPT, help="persona prompt (may be empty)")
    p.add_argument("--input-wav", type=Path, required=True, help="the user's audio (any rate, mono or stereo)")
    p.add_argument("--output-wav", type=Path, required=True, help="the agent's audio: 24 kHz mono 16-bit WAV")
    p.add_argument("--output-text", type=Path, required=True, help="the agent's text, one entry per frame (JSON)")
    p.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    p.add_argument("--seed", type=options.seed, default=None, help="random seed for reproducible sampling")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="LM weights: default bfloat16 on cuda, float32 on cpu")
    from .respond import add_precision_arguments, add_transcription_arguments

    add_precision_arguments(p)
    add_transcription_arguments(p)
    p.add_argument("--temp-audio", type=options.temperature, default=0.8)
    p.add_argument("--temp-text", type=options.temperature, default=0.7)
    p.add_argument("--topk-audio", type=options.top_k, default=250)
    p.add_argument("--topk-text", type=options.top_k, default=25)


def offline_transcript(result, transcriber, model) -> list[dict]:
    """Both sides of an offline run in time order: the user's lines (split at pauses, as live
    duplex splits them) and the agent's stretches of speech (split at a second of no words)."""
    from ..session.user_transcript import UserTranscript

    user = UserTranscript(transcriber)
    for i, (token, eot) in enumerate(zip(result.user_text_ids, result.end_of_turn)):
        user.add(i, token, eot, live=True)
    user.finish()
    entries = [{"speaker": "user", "text": line.text, "start": round(line.start, 3), "end": round(line.end, 3)}
               for line in user.lines]
    run: list[int] = []
    start = quiet = 0
    for i, tid in enumerate([*result.text_ids, 3] + [3] * 13):  # padding flushes the last stretch
        if tid not in (0, 3):
            start = i if not run else start
            run.append(tid)
            quiet = 0
        elif run:
            quiet += 1
            if quiet > 12:
                text = "".join(model.tokenizer.piece_text(t) for t in run).strip()
                end = i - quiet + 1
                entries.append({"speaker": "agent", "text": text, "start": round(start / 12.5, 3),
                                "end": round(end / 12.5, 3)})
                run = []
    return sorted(entries, key=lambda e: (e["start"], e["speaker"] != "user"))


def voice_input(spec: str) -> list[tuple[str, Path]]:
    """The voice as an input file to protect from being overwritten, when it names one."""
    path = Path(spec).expanduser()
    return [("--voice", path)] if path.suffix and path.is_file() else []


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..assets.hub import find_model_dir
    from ..assets.voices import open_voice
    from ..audio.files import encode_wav_pcm16, read_audio, wav_pcm16_size
    from ..cli import UserError
    from ..engine.config import FRAME_SIZE
    from ..engine.model import load_model
    from ..engine.offline import run_offline
    from ..engine.prompts import check_prompts_fit, span
    from ..engine.sampling import SamplingConfig
    from .outputs import OutputSet

    user_audio = read_audio(args.input_wav)  # read first: a bad input fails before loading the model
    frames = -(-len(user_audio) // FRAME_SIZE)
    outputs = OutputSet([("--input-wav", args.input_wav), *voice_input(args.voice)])
    outputs.add("--output-wav", args.output_wav, wav_pcm16_size(len(user_audio)))
    outputs.add("--output-text", args.output_text, 64 * frames + 64)  # a JSON string per frame
    outputs.add("--output-transcript", args.output_transcript, 64 * frames + 1024)
    outputs.check()  # before the model runs: a long run's work is never lost at the last step
    model_dir = args.model_dir or find_model_dir()
    if model_dir is None:
        raise UserError("no downloaded model found: run `ppx-desktop download` first or pass --model-dir")
    from .respond import load_transcriber

    if args.output_transcript is not None and not args.transcribe_user:
        load_transcriber(args, Path(model_dir), None)  # refuses, saying why, before the model loads
    model = load_model(model_dir, device=args.device, dtype=args.dtype, quant=args.quant, context=args.context)
    transcriber = load_transcriber(args, Path(model_dir), model.device)
    rng = None
    if args.seed is not None:
        torch.manual_seed(args.seed)
        rng = torch.Generator(device=model.device).manual_seed(args.seed)
    voice, _ = open_voice(model, args.voice)
    for note in voice.notes:
        print(f"note: {note}")
    text_tokens = model.tokenizer.encode_system_prompt(args.text_prompt)
    context = model.config.lm.context
    steps = check_prompts_fit(voice, text_tokens, context)
    if steps + frames > context:
        print(f"note: the prompts and the input take {span(steps + frames)}, the model remembers {span(context)}: "
              f"from {span(context - steps)} into the input on, the oldest frames (the voice and persona first) "
              "are forgotten")
    sampling = SamplingConfig(use_sampling=not args.greedy, temp_text=args.temp_text, top_k_text=args.topk_text,
                              temp_audio=args.temp_audio, top_k_audio=args.topk_audio)
    with torch.no_grad(), tqdm(total=0, unit="frame", desc="generating", disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = run_offline(model, user_audio, voice=voice, text_tokens=text_tokens, sampling=sampling, rng=rng,
                             progress=progress, transcriber=transcriber)
    contents = {"--output-wav": encode_wav_pcm16(result.pcm),
                "--output-text": json.dumps(result.text, ensure_ascii=False).encode("utf-8")}
    if args.output_transcript is not None:
        contents["--output-transcript"] = json.dumps(offline_transcript(result, transcriber, model),
                                                     ensure_ascii=False, indent=1).encode("utf-8")
    outputs.write(contents)
    words = "".join(t for t in result.text if t not in ("EPAD", "PAD", "BOS", "EOS")).strip()
    tail = f" and {args.output_transcript}" if args.output_transcript is not None else ""
    print(f"wrote {args.output_wav} ({len(result.pcm) / 24000:.1f} s), {args.output_text}{tail}")
    if words:
        print(f"agent said: {words}")
    return 0
