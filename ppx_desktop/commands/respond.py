"""`ppx-desktop respond`: the turn-based path without the window.

Each input WAV is one user turn of the same conversation (the agent remembers earlier turns);
the agent's answers are written one after the other into the output WAV.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import options
from .offline import DEFAULT_PROMPT, voice_input


def _layers(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of layers or 'auto', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("the number of layers cannot be negative")
    return n


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", type=Path, default=None,
                   help="model directory (default: the model downloaded with `ppx-desktop download`)")
    p.add_argument("--voice", required=True, help="voice preset name, custom voice name, or a .pt/WAV file")
    p.add_argument("--text-prompt", default=DEFAULT_PROMPT, help="persona prompt (may be empty)")
    p.add_argument("--input-wav", type=Path, nargs="+", required=True,
                   help="the user's turns, one audio file each (any rate, mono or stereo)")
    p.add_argument("--output-wav", type=Path, required=True, help="the agent's answers: 24 kHz mono 16-bit WAV")
    p.add_argument("--output-text", type=Path, default=None, help="the answers' text and how each turn ended (JSON)")
    p.add_argument("--max-steps", type=int, default=75,
                   help="longest answer in 80 ms steps (default 75 = 6 s; 50-500 in the app)")
    p.add_argument("--no-early-stop", action="store_true", help="always generate --max-steps frames")
    p.add_argument("--diagnostic", action="store_true",
                   help="print per-step encode/LM/decode times, real-time factor and text token probabilities")
    p.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    p.add_argument("--seed", type=options.seed, default=None, help="random seed for reproducible sampling")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    add_precision_arguments(p)
    p.add_argument("--offload-layers", type=_layers, default=0, metavar="N|auto",
                   help="keep N of the LM's layers in host memory and stream them to the GPU every frame "
                        "(slower; for GPUs too small even for int4); auto: as many as needed")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help="LM weights: default bfloat16 on cuda, float32 on cpu")
    add_transcription_arguments(p)


def add_transcription_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transcribe-user", action="store_true",
                   help="also write down what the user said (the speech-to-text model runs in the same frame)")
    p.add_argument("--stt-model-dir", type=Path, default=None,
                   help="speech-to-text model directory (default: MODEL_DIR/stt, else the one `ppx-desktop "
                        "download --with-transcription` fetched)")
    p.add_argument("--output-transcript", type=Path, default=None,
                   help="both sides as a JSON list of {speaker, text, start, end} (seconds); needs --transcribe-user")


def load_transcriber(args, model_dir: Path, device):
    """The `Transcriber` for `--transcribe-user` (None without it), on the model's device."""
    from ..assets.stt_model import find_stt_dir
    from ..cli import UserError
    from ..engine.stt_load import load_stt
    from ..engine.transcriber import Transcriber

    if not args.transcribe_user:
        if args.output_transcript is not None:
            raise UserError("--output-transcript needs --transcribe-user (the user's words come from the "
                            "speech-to-text model)")
        return None
    stt_dir = args.stt_model_dir or (model_dir / "stt" if (model_dir / "stt").is_dir() else find_stt_dir())
    if stt_dir is None:
        raise UserError("--transcribe-user needs the speech-to-text model: run `ppx-desktop download "
                        "--with-transcription`, or pass --stt-model-dir")
    return Transcriber(load_stt(stt_dir, device=str(device)))


def transcript_entries(turns) -> list[dict]:
    """Both sides of `TurnResult`s in order: the user's words, then the agent's answer."""
    entries = []
    for r in turns:
        if r.user_line is not None:
            entries.append({"speaker": "user", "text": r.user_line.text, "start": round(r.user_line.start, 3),
                            "end": round(r.user_line.end, 3)})
        entries.append({"speaker": "agent", "text": r.text, "start": round(r.answer_start_s, 3),
                        "end": round(r.answer_start_s + r.steps * 0.08, 3)})
    return entries


def add_precision_arguments(p: argparse.ArgumentParser) -> None:
    """--quant and --context, as `respond` and `offline` take them."""
    p.add_argument("--quant", choices=["auto", "none", "int8", "int4"], default="none",
                   help="weight-only quantisation of the LM's linear layers (int8: about half the memory of "
                        "bfloat16, int4: about a third; auto: the best that fits the GPU)")
    p.add_argument("--context", type=int, default=None,
                   help="frames of conversation the model keeps in view (default: the model's 3000 = 4 minutes); "
                        "fewer need less GPU memory")


def resolve_model_dir(model_dir: Path | None) -> Path:
    """`--model-dir`, else the downloaded model; a clear error when there is none."""
    from ..cli import UserError

    if model_dir is not None:
        return model_dir
    try:
        from ..assets.hub import find_model_dir
    except ImportError:  # pragma: no cover - the assets module ships with the app
        find_model_dir = None
    found = find_model_dir() if find_model_dir is not None else None
    if found is None:
        raise UserError("no downloaded model found: run `ppx-desktop download` first, or pass --model-dir")
    return Path(found)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..audio.files import encode_wav_pcm16, read_audio, wav_pcm16_size
    from ..engine.config import FRAME_SIZE
    from ..engine.model import load_model
    from ..engine.prompts import span
    from ..engine.sampling import SamplingConfig
    from ..paths import state_cache_dir
    from ..session.conversation import Conversation
    from ..session.statecache import PromptStateCache
    from .outputs import OutputSet

    if not 1 <= args.max_steps <= 10_000:
        raise ValueError("--max-steps must be between 1 and 10000 (80 ms each)")
    turns = [read_audio(path) for path in args.input_wav]  # bad inputs fail before the model loads
    outputs = OutputSet([*(("--input-wav", p) for p in args.input_wav), *voice_input(args.voice)])
    outputs.add("--output-wav", args.output_wav, wav_pcm16_size(len(turns) * args.max_steps * FRAME_SIZE))
    outputs.add("--output-text", args.output_text, len(turns) * (32 * args.max_steps + 512) + 64 * 1024)
    outputs.add("--output-transcript", args.output_transcript, len(turns) * 64 * (args.max_steps + 200) + 1024)
    outputs.check()  # before the model runs: the answers are never lost at the last step
    model_dir = resolve_model_dir(args.model_dir)
    if args.output_transcript is not None and not args.transcribe_user:
        load_transcriber(args, model_dir, None)  # refuses, saying why, before the model loads
    model = load_model(model_dir, device=args.device, dtype=args.dtype, quant=args.quant,
                       offload_layers=args.offload_layers, context=args.context)
    transcriber = load_transcriber(args, model_dir, model.device)
    if model.lm.streamer is not None:
        print(model.lm.streamer.plan.summary())
    sampling = SamplingConfig.greedy() if args.greedy else SamplingConfig()
    conv = Conversation(model, sampling=sampling, seed=args.seed, cache=PromptStateCache(state_cache_dir()),
                        transcriber=transcriber)
    answers, report, results = [], [], []
    with torch.no_grad():
        cached = conv.start(args.voice, args.text_prompt)
        for note in conv.notes:
            print(f"note: {note}")
        print(f"voice {args.voice}, prompt ready{' (from cache)' if cached else ''}")
        for i, (path, audio) in enumerate(zip(args.input_wav, turns), 1):
            respond = conv.respond_diagnostic if args.diagnostic else conv.respond
            r = respond(audio, max_steps=args.max_steps, early_stop=not args.no_early_stop)
            answers.append(r.pcm)
            results.append(r)
            report.append({"input": str(path), "text": r.text, "end": r.end, "steps": r.steps,
                           "seconds": r.steps * 0.08})
            if r.user_line is not None:
                print(f"you said ({path.name}): {r.user_line.text!r}")
            print(f"turn {i} ({path.name}): {r.steps} steps, ended by {r.end.replace('_', ' ')}: {r.text!r}")
            if r.diagnostics is not None:
                print(f"  {r.diagnostics.summary()}")
                for s in r.diagnostics.steps:
                    if s.text is not None:
                        print(f"    {s.phase:6s} {s.text!r:>14} p={s.text_prob:.2f} "
                              f"({s.encode_ms:.1f} + {s.lm_ms:.1f} + {s.decode_ms:.1f} ms)")
    contents = {"--output-wav": encode_wav_pcm16(np.concatenate(answers) if answers else np.zeros(0, np.float32))}
    if args.output_text is not None:
        contents["--output-text"] = json.dumps({"voice": args.voice, "prompt": args.text_prompt, "turns": report},
                                               ensure_ascii=False, indent=1).encode("utf-8")
    if args.output_transcript is not None:
        contents["--output-transcript"] = json.dumps(transcript_entries(results), ensure_ascii=False,
                                                     indent=1).encode("utf-8")
    outputs.write(contents)
    written = [str(p) for p in (args.output_wav, args.output_text, args.output_transcript) if p is not None]
    print("wrote " + " and ".join(written))
    if conv.context_full:
        print(f"note: the conversation passed the model's context ({span(conv.context_size)}); the oldest part "
              "is forgotten")
    return 0
