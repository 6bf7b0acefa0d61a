"""`ppx-desktop bench --prompt`: how long a new conversation's prompt phases take, stepwise
(engine/prompts.py, one model call per frame) and batched (engine/prefill.py), and how long a
context refresh holds a conversation up (session/context.py).

The prompt is a preset-like voice (a `.pt` voice file: the presets' and custom voices' format)
and a persona prompt; the refresh rebuilds a conversation at the end of its window with the
default history. An audio (WAV) voice prompt is timed too: its Mimi encoding stays frame by frame.
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import numpy as np

VOICE_SECONDS = 10.0
PERSONA = "You are a wise and friendly teacher. Answer questions or provide advice in a clear and engaging way."
SYNTHETIC_PERSONA_TOKENS = 32  # about what the persona above takes, for models without a tokenizer


def _model(args, device, dtype):
    from ..engine.config import ModelConfig
    from ..engine.model import load_model
    from ..engine.opcount import random_model, small_config
    from ..engine.tiny import tiny_config

    if args.model_dir is not None:
        return load_model(args.model_dir, device=str(device), dtype=dtype, quant=args.quant)
    config = {"tiny": tiny_config, "small": small_config, "full": ModelConfig}[args.config or "small"]()
    return random_model(config, device, dtype, args.quant)


def measure(args) -> dict:
    import torch

    from ..audio.files import frames, normalize_loudness
    from ..engine.config import FRAME_SIZE
    from ..engine.generator import Generator
    from ..engine.model import resolve_device, resolve_dtype
    from ..engine.prefill import PREFILL_CHUNK, Prefiller, prefill_activation_bytes
    from ..engine.prompts import VoicePrompt, run_prompts
    from ..engine.quant import check_quant
    from ..engine.sampling import SamplingConfig
    from ..engine.tiny import synthetic_voice
    from ..session.context import ContextSettings
    from ..session.statecache import PromptState

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    check_quant(args.quant, device)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) * 1e3

    model = _model(args, device, dtype)
    cfg = model.config
    gen = Generator(model.lm, SamplingConfig())
    pf = Prefiller(gen)
    wav = VoicePrompt("wav", frames=frames(normalize_loudness(synthetic_voice(0, VOICE_SECONDS)), FRAME_SIZE))
    emb, cache = pf.voice_file(cfg.prompt, model.mimi, wav)
    voice = VoicePrompt("preset", embeddings=emb.cpu(), cache=cache.cpu())
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        text = tokenizer.encode_system_prompt(PERSONA)
    else:
        text = [4 + i % (cfg.lm.text_card - 4) for i in range(SYNTHETIC_PERSONA_TOKENS)]
    state = gen.init_state(1)

    def stepwise(v=voice):
        run_prompts(gen, state, cfg.prompt, mimi=model.mimi, voice=v, text_tokens=text)

    def batched(v=voice):
        pf.prompts(state, cfg.prompt, mimi=model.mimi, voice=v, text_tokens=text)

    repeats = max(1, min(args.steps, 5))
    stepwise(), batched()  # first calls pay lazy initialisation
    step_ms = [timed(stepwise) for _ in range(min(repeats, 3))]
    batch_ms = [timed(batched) for _ in range(repeats)]
    wav_step_ms, wav_batch_ms = timed(lambda: stepwise(wav)), timed(lambda: batched(wav))
    prompt_frames = state.offset
    # A conversation at the end of its window, refreshed with the default history.
    snapshot = PromptState.capture(state)
    window = cfg.lm.context - 1
    room = window - prompt_frames
    kept = max(0, min(ContextSettings().history_frames, room - 1))
    rng, n = np.random.default_rng(0), room + 1
    history = torch.from_numpy(np.concatenate([
        rng.integers(4, cfg.lm.text_card, (1, 1, n)), rng.integers(0, cfg.lm.card, (1, cfg.lm.n_q, n)),
    ], axis=1)).to(device)
    # What a conversation adds at its start: a trial replay that measures the refresh speed.
    trial = history[:, :, :min(ContextSettings().calibration_frames, room)]
    calibration_ms = []
    for _ in range(repeats):
        snapshot.apply(state)
        calibration_ms.append(timed(lambda: (snapshot.apply(state), pf.frames(state, trial))))
    refresh_ms = []
    for _ in range(repeats):
        snapshot.apply(state)
        pf.frames(state, history)  # a conversation whose next frame would no longer see the prompt
        refresh_ms.append(timed(lambda: pf.refresh(state, snapshot, history[:, :, -kept - 1:-1])))
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"cpu ({torch.get_num_threads()} threads)",
        "config": str(args.model_dir) if args.model_dir else (args.config or "small"),
        "dtype": str(dtype).removeprefix("torch."), "quant": args.quant,
        "voice_frames": len(wav.frames), "persona_tokens": len(text), "prompt_frames": prompt_frames,
        "stepwise_ms": median(step_ms), "batched_ms": median(batch_ms),
        "speedup": median(step_ms) / median(batch_ms),
        "wav_stepwise_ms": wav_step_ms, "wav_batched_ms": wav_batch_ms,
        "calibration_ms": median(calibration_ms), "refresh_ms": median(refresh_ms),
        "refresh_kept_frames": kept, "refresh_frames_before": window,
        "chunk": PREFILL_CHUNK,
        "activation_bound_bytes": prefill_activation_bytes(cfg.lm, PREFILL_CHUNK, dtype, positions=kept + 1),
    }
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    with torch.no_grad():
        result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"device {result['device']}, model {result['config']}, {result['dtype']}, quant {result['quant']}")
    print(f"prompt: a {result['voice_frames']}-frame voice and a {result['persona_tokens']}-token persona, "
          f"{result['prompt_frames']} frames in all")
    print(f"prompt phases, stepwise   {result['stepwise_ms']:9.1f} ms")
    print(f"prompt phases, batched    {result['batched_ms']:9.1f} ms  ({result['speedup']:.1f}x faster)")
    print(f"  with a WAV voice        {result['wav_stepwise_ms']:9.1f} ms stepwise, {result['wav_batched_ms']:.1f} ms "
          "batched (Mimi encodes frame by frame)")
    print(f"refresh speed trial       {result['calibration_ms']:9.1f} ms  (once per conversation, at its start)")
    print(f"context refresh           {result['refresh_ms']:9.1f} ms  ({result['refresh_kept_frames']} frames kept "
          f"of {result['refresh_frames_before']})")
    print(f"activation bound          {result['activation_bound_bytes'] / 2**20:9.1f} MiB per {result['chunk']}-frame "
          "chunk")
    return 0
