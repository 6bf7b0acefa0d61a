"""Check 10: Mimi's codes on the GPU equal the CPU's for the same audio.

Random codebooks all sit at zero (every frame would get code 0), so the check first draws them
around the latents of the speech it then encodes. Codes can flip where two centroids are nearly
equidistant; the CPU run keeps each level's distance margin, so a mismatch at a near-tie is told
apart from a real one. TF32 (cuDNN's default for convolutions) is tried first, then disabled.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from ppx_desktop.engine.mimi import Mimi
from ppx_desktop.engine.opcount import fill_random_

NEAR_TIE = 1e-3  # relative distance margin below which a flipped code is float noise
IDENTICAL_SHARE = 0.95  # of frames with all codes equal


def spread_codebooks(mimi: Mimi, audio: np.ndarray, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    latent = mimi.encode_latent(torch.from_numpy(audio).view(1, 1, -1))
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        residual = rvq.input_proj(latent)[0].T  # [F, D]
        for codebook in rvq.codebooks:
            bins, dim = codebook.embedding_sum.shape
            pick = torch.randint(0, residual.shape[0], (bins,), generator=gen)
            centroids = residual[pick] + 0.5 * residual.std(0) * torch.randn(bins, dim, generator=gen)
            codebook.embedding_sum.copy_(centroids)
            codebook.cluster_usage.fill_(1.0)
            codebook.refresh()
            residual = residual - codebook.decode(codebook.encode(residual))


def encode(mimi: Mimi, frames: np.ndarray, dtype=torch.float32) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Streaming codes `[T, K]` on the host, and each frame's latent (for the margins)."""
    device = next(mimi.parameters()).device
    state = mimi.init_encoder_state(1)
    codes, latents = [], []
    for pcm in frames:
        latent = mimi.encode_step_latent(torch.from_numpy(pcm).to(device=device, dtype=dtype).view(1, 1, -1), state)
        codes.append(mimi.quantizer.encode(latent)[0, :, 0].cpu())
        latents.append(latent)
    return torch.stack(codes), latents


def margins(mimi: Mimi, latents: list[torch.Tensor]) -> torch.Tensor:
    """`[T, K]` relative gap between the nearest and the second nearest centroid of each code."""
    out = []
    for latent in latents:
        row = []
        for rvq, levels in ((mimi.quantizer.rvq_first, 1), (mimi.quantizer.rvq_rest, mimi.num_codebooks - 1)):
            residual = rvq.input_proj(latent)[0, :, 0]
            for codebook in rvq.codebooks[:levels]:
                d = torch.cdist(residual[None, None], codebook.embedding[None])[0, 0]
                two = d.topk(2, largest=False).values
                row.append(float((two[1] - two[0]) / two[1].clamp(min=1e-12)))
                residual = residual - codebook.embedding[d.argmin()]
        out.append(row)
    return torch.tensor(out)


def compare(ref: torch.Tensor, margin: torch.Tensor, got: torch.Tensor) -> dict:
    equal = got == ref
    first_bad = [(t, int((~equal[t]).nonzero()[0])) for t in range(len(ref)) if not bool(equal[t].all())]
    real = [(t, level) for t, level in first_bad if margin[t, level] >= NEAR_TIE]
    return {"frames": len(ref), "identical_frames": round(float(equal.all(1).float().mean()), 4),
            "per_level": [round(float(x), 4) for x in equal.float().mean(0)],
            "mismatched_frames": len(first_bad), "mismatches_not_near_ties": real[:10],
            "ok": not real and float(equal.all(1).float().mean()) >= IDENTICAL_SHARE}


@contextlib.contextmanager
def tf32_disabled():
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def check_codec(run, parts) -> None:
    n = run.scale.codec_frames
    frames = run.speech_frames(n)
    cpu = Mimi(run.config.mimi)
    fill_random_(cpu, seed=0)
    spread_codebooks(cpu, frames.reshape(-1))
    cpu.eval()
    ref, latents = encode(cpu, frames)
    margin = margins(cpu, latents)
    criterion = (f"{n} frames of speech encoded frame by frame: every code the CPU gives, except where two "
                 f"centroids are within {NEAR_TIE:g} (relative) of each other, and all codes of at least "
                 f"{IDENTICAL_SHARE:.0%} of frames (TF32 disabled if needed, and said)")
    if not run.cuda:
        # The same comparison against a float64 codec on the CPU: how much rounding moves the codes.
        wide = Mimi(run.config.mimi, dtype=torch.float64)
        wide.load_state_dict({k: v.double() for k, v in cpu.state_dict().items()})
        got, _ = encode(wide.eval(), frames, torch.float64)
        v = compare(ref, margin, got)
        parts.needs_cuda("codes", criterion, dry_run_float64_vs_float32=v)
        parts.summary = f"dry run: float64 vs float32 codes on the CPU, {v['identical_frames']:.0%} of frames identical"
        return
    gpu = copy.deepcopy(cpu).to(run.device)
    tf32 = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32, "matmul.allow_tf32":
            torch.backends.cuda.matmul.allow_tf32}
    default = compare(ref, margin, encode(gpu, frames)[0])
    values = {"defaults": tf32, "with_defaults": default}
    ok, how = default["ok"], "with PyTorch's TF32 defaults"
    if not ok:
        with tf32_disabled():
            strict = compare(ref, margin, encode(gpu, frames)[0])
        values["tf32_disabled"] = strict
        ok, how = strict["ok"], "only with TF32 disabled (the codec needs it off)"
    values["verdict"] = how if ok else "differs even with TF32 disabled"
    parts.judge("codes", criterion, ok, **values)
    shown = values.get("tf32_disabled", default)
    parts.summary = f"{shown['identical_frames']:.1%} of frames identical, {values['verdict']}"
