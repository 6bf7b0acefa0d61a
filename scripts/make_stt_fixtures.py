"""Golden fixtures for the speech-to-text engine, produced by the REFERENCE on a tiny model.

Runs by hand in its own environment, outside the repository, with Kyutai's `moshi` package from
PyPI (not ours; nothing of ppx_desktop is imported here). See tests/fixtures/stt/README.md:

    python3 -m venv /work/refenv-stt
    /work/refenv-stt/bin/pip install torch==2.13.0 "numpy<2.3" safetensors sentencepiece einops sphn \
        julius huggingface_hub tqdm soundfile
    /work/refenv-stt/bin/pip install --no-deps moshi==0.2.13
    git -C <clone of kyutai-labs/delayed-streams-modeling> show HEAD:scripts/stt_from_file_pytorch.py \
        > /tmp/stt_from_file_pytorch.py
    .venv/bin/ppx-desktop make-tiny-model /tmp/tiny               # our side: writes /tmp/tiny/stt
    /work/refenv-stt/bin/python scripts/make_stt_fixtures.py --stt-dir /tmp/tiny/stt \
        --dsm-script /tmp/stt_from_file_pytorch.py --out tests/fixtures/stt

What it records, all from the reference's own code:
* the tiny model's files, copied (the fixtures are self-contained);
* `speech.wav`, a synthetic test recording (voiced bursts and pauses, 24 kHz mono 16-bit);
* `session.safetensors`: the file transcription session of the DSM script's flow (its silence
  prefix, the audio, its end flush of `audio_delay_seconds` of silence), loaded by
  `CheckpointInfo` and run through `MimiModel` and `LMGen.step_with_extra_heads` in float32:
  per frame the 32 codes, the greedy text token, the text logits and the end-of-turn heads;
* `words.json`: the words with times from the script's own `tokens_to_timestamped_text`;
* `rules.json`: that function on hand-made token streams covering each of its branches;
* `script_bf16.txt`: the script's own `main()` output on speech.wav (it runs the model in bfloat16).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import sys
import types
from pathlib import Path

os.environ.setdefault("NO_TORCH_COMPILE", "1")
os.environ.setdefault("NO_CUDA_GRAPH", "1")

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

SAMPLE_RATE = 24_000


def test_recording(seed: int = 7) -> np.ndarray:
    """Voiced bursts (harmonic tones with syllable envelopes and vibrato) separated by pauses."""
    rng = np.random.default_rng(seed)
    parts = []
    for f0, seconds, pause in ((180.0, 1.1, 0.5), (120.0, 1.4, 0.3), (220.0, 0.7, 0.9), (150.0, 1.0, 0.0)):
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.04 * np.sin(2 * np.pi * 5 * t))) / SAMPLE_RATE
        voice = sum(np.sin(h * phase) / h for h in range(1, 6)) * 0.5 * (1 - np.cos(2 * np.pi * 3.3 * t))
        parts.append(0.2 * voice + 0.01 * rng.standard_normal(len(t)))
        parts.append(0.003 * rng.standard_normal(int(pause * SAMPLE_RATE)))
    return np.concatenate(parts).astype(np.float32)


def load_dsm(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("dsm_stt_from_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def words_json(timed) -> list[dict]:
    return [{"word": t.text, "start": float(t.timestamp[0]), "end": float(t.timestamp[1])} for t in timed]


def rule_cases(tokenizer) -> list[dict]:
    """Token streams for each branch of the timestamp rules: single words, several words between two
    boundaries, a last stretch ended by EOS, ended by the stream's end, no boundary, an empty stretch."""
    piece = lambda text: tokenizer.encode(text)  # noqa: E731
    hello, world, day = piece("hello"), piece("world"), piece("day")
    eos = tokenizer.eos_id()
    cases = {
        "single_words": [3, 3, 0, *hello, 3, 3, 0, *world, 3, 0, *day, 3, 3, 3],
        "two_words_one_stretch": [3, 0, *hello, *piece(" world"), 3, 3, 0, *day, 3, 3],
        "last_ends_at_eos": [3, 0, *hello, 3, 0, *world, 3, 3, eos, 3, 3, 3, 3],
        "last_runs_to_the_end": [0, *hello, 3, 3, 0, *world, *day, 3, 3],
        "no_boundary": [3, 3, *hello, 3, 3],
        "empty_stretches": [3, 0, 0, 3, 3, 0, 3, *hello, 0, 3, 3],
        "specials_dropped": [0, 1, *hello, 2, 3, 0, *world, 3],
        "early_times_clamp": [0, *hello, 0, *world, 0, *day, 3],
        # The last stretch has no EOS and more than a second of stream after it: the script fails.
        "tail_over_a_second": [0, *hello, 3, 0, *world] + [3] * 20,
    }
    out = []
    for name, tokens in cases.items():
        for offset in (0.5, 1.5, 2.5):
            entry = {"name": name, "tokens": [int(t) for t in tokens], "offset_seconds": offset}
            try:
                entry["words"] = words_json(DSM.tokens_to_timestamped_text(
                    torch.tensor(tokens), tokenizer, 12.5, end_of_padding_id=0, padding_token_id=3,
                    offset_seconds=offset))
            except Exception as exc:  # recorded: the test checks our documented behaviour there
                entry["error"] = f"{type(exc).__name__}: {exc}"
            out.append(entry)
    return out


def main() -> None:
    global DSM
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stt-dir", type=Path, required=True, help="a tiny STT directory (make-tiny-model DIR/stt)")
    ap.add_argument("--dsm-script", type=Path, required=True,
                    help="delayed-streams-modeling's scripts/stt_from_file_pytorch.py")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    import moshi
    from moshi.models import LMGen, loaders
    from safetensors.torch import save_file

    DSM = load_dsm(args.dsm_script)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((args.stt_dir / "config.json").read_text())
    names = ["config.json", config["moshi_name"], config["mimi_name"], config["tokenizer_name"],
             config["mimi_config_name"]]
    for name in names:
        shutil.copyfile(args.stt_dir / name, out / name)
    wav = out / "speech.wav"
    soundfile.write(str(wav), test_recording(), SAMPLE_RATE, subtype="PCM_16")

    info = loaders.CheckpointInfo.from_hf_repo(
        None, moshi_weights=out / config["moshi_name"], mimi_weights=out / config["mimi_name"],
        tokenizer=out / config["tokenizer_name"], config_path=out / "config.json",
        mimi_config_path=out / config["mimi_config_name"])
    mimi = info.get_mimi(device="cpu")
    tokenizer = info.get_text_tokenizer()
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    logits = []
    lm_gen = LMGen(lm, temp=0, temp_text=0.0, on_text_logits_hook=lambda x: logits.append(x[0, 0, 0].clone()))
    prefix_s = info.stt_config.get("audio_silence_prefix_seconds", 1.0)
    delay_s = info.stt_config.get("audio_delay_seconds", 5.0)
    padding = info.raw_config.get("text_padding_token_id", 3)
    import julius
    import sphn

    audio, rate = sphn.read(str(wav))
    audio = julius.resample_frac(torch.from_numpy(audio), rate, mimi.sample_rate)
    if audio.shape[-1] % mimi.frame_size:
        audio = torch.nn.functional.pad(audio, (0, mimi.frame_size - audio.shape[-1] % mimi.frame_size))
    n_prefix, n_suffix = math.ceil(prefix_s * mimi.frame_rate), math.ceil(delay_s * mimi.frame_rate)
    silence = torch.zeros(1, 1, mimi.frame_size)
    chunks = [silence] * n_prefix + list(torch.split(audio[:, None], mimi.frame_size, dim=-1)) + [silence] * n_suffix
    codes, tokens, heads = [], [], []
    with torch.no_grad(), mimi.streaming(1), lm_gen.streaming(1):
        for chunk in chunks:
            c = mimi.encode(chunk)
            text, vad = lm_gen.step_with_extra_heads(c)
            codes.append(c[0, :, 0])
            tokens.append(text[0, 0, 0])
            heads.append(torch.stack([h[0, 0] for h in vad]))
    tokens_t = torch.stack(tokens)
    offset = int(n_prefix / mimi.frame_rate) + delay_s
    timed = DSM.tokens_to_timestamped_text(tokens_t[None, None], tokenizer, mimi.frame_rate, end_of_padding_id=0,
                                           padding_token_id=padding, offset_seconds=offset)
    text_logits = torch.stack(logits).float()
    top2 = text_logits.topk(2, dim=-1).values
    gaps = top2[:, 0] - top2[:, 1]
    session = {"codes": torch.stack(codes),
               "tokens": tokens_t, "text_logits": text_logits, "end_of_turn": torch.stack(heads).float(),
               "top2_gap": gaps}
    save_file({k: v.contiguous() for k, v in session.items()}, str(out / "session.safetensors"))
    (out / "words.json").write_text(json.dumps(words_json(timed), indent=1) + "\n")
    (out / "rules.json").write_text(json.dumps(rule_cases(tokenizer), indent=1) + "\n")

    # The script's own main(), unchanged: bfloat16 model, prints the words with times.
    buf = io.StringIO()
    cwd = os.getcwd()
    os.chdir(out)  # the script resolves mimi_config_name relative to the working directory
    try:
        script_args = argparse.Namespace(in_file=str(wav), hf_repo=None, moshi_weight=str(out / config["moshi_name"]),
                                         mimi_weight=str(out / config["mimi_name"]),
                                         tokenizer=str(out / config["tokenizer_name"]),
                                         config_path=str(out / "config.json"), vad=False, device="cpu")
        with contextlib.redirect_stdout(buf), torch.no_grad():
            DSM.main(script_args)
    finally:
        os.chdir(cwd)
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    (out / "script_bf16.txt").write_text(lines[-1] + "\n")

    manifest = {
        "reference": {"moshi": moshi.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
                      "dsm_script_sha256": hashlib.sha256(args.dsm_script.read_bytes()).hexdigest()},
        "prefix_frames": n_prefix, "flush_frames": n_suffix, "offset_seconds": offset,
        "frames": len(chunks), "min_top2_gap": float(gaps.min()),
        "token_counts": {"pad": int((tokens_t == 3).sum()), "end_of_padding": int((tokens_t == 0).sum()),
                         "text": int((tokens_t > 3).sum())},
        "words": len(timed),
        "files": {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                  for name in sorted(os.listdir(out)) if name != "manifest.json" and name != "README.md"},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=1))


DSM: types.ModuleType


if __name__ == "__main__":
    main()
