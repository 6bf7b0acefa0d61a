"""`ppx-desktop bench --end-of-turn`: how much sooner the semantic end of turn ends a hands-free
turn than the silence does, on a recording of speech (session/turn_timing.py).

The speech-to-text model's end-of-turn probability is computed for every frame of the recording
(the bundled spoken question by default, or `--input-wav`), then both detectors run over it with
the app's settings. Only the released speech-to-text weights say anything about the gain: a
make-tiny-model directory's random model gives random probabilities, so its figure checks the
plumbing, not the idea.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--end-of-turn", action="store_true",
                   help="instead: when the semantic end of turn ends each turn of a recording against the silence "
                        "(needs the speech-to-text model; commands/bench_turns.py)")
    p.add_argument("--stt-model-dir", type=Path, default=None,
                   help="--end-of-turn: the speech-to-text model (default: --model-dir's stt/, else the download)")
    p.add_argument("--input-wav", type=Path, default=None,
                   help="--end-of-turn: speech to time (default: the bundled spoken question)")
    p.add_argument("--end-silence", type=float, default=None,
                   help="--end-of-turn: the silence that ends a turn, seconds (default: the app's, 1.5)")


def _stt_dir(args) -> Path:
    from ..cli import UserError
    from ..session.transcription import find_stt_model

    if args.stt_model_dir is not None:
        return args.stt_model_dir
    found = find_stt_model(args.model_dir)  # the app's own lookup: DIR/stt, else the download
    if found is None:
        raise UserError("the semantic end of turn needs the speech-to-text model: run `ppx-desktop download "
                        "--with-transcription`, or pass --stt-model-dir (a make-tiny-model directory's stt/ works)")
    return found


def measure(args) -> dict:
    from ..assets.resources import resources_dir
    from ..audio.files import read_audio
    from ..audio.vad import VadConfig
    from ..engine.stt_load import load_stt
    from ..session.turn_timing import end_of_turn_probabilities, time_turn_ends, with_lead_and_tail

    wav = args.input_wav or resources_dir() / "speech" / "quant_check.wav"
    speech = read_audio(wav)  # a bad file fails before the model loads
    # VadConfig's defaults are the app's hands-free defaults (ui/settings.py keeps them equal).
    vad = VadConfig() if args.end_silence is None else VadConfig(end_silence_s=args.end_silence)
    stt_dir = _stt_dir(args)
    stt = load_stt(stt_dir, device=None if args.device in (None, "meta") else args.device, dtype=args.dtype)
    audio = with_lead_and_tail(speech, vad)
    report = time_turn_ends(audio, end_of_turn_probabilities(stt, audio), vad)
    return {**report.to_json(), "input_wav": str(wav), "stt_model_dir": str(stt_dir),
            # A codec described by its own JSON file is not the released one: a tiny test model.
            "random_weights": stt.config.mimi_config_name is not None, "summary": report.summary()}


def run(args: argparse.Namespace) -> int:
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(result["summary"])
        if result["random_weights"]:
            print("(a tiny model with random weights: its probabilities are random, so this checks the plumbing "
                  "only; the released speech-to-text model gives the real figure)")
    return 0
