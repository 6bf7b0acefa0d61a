"""Shared pieces of the frame checks: states to start from, a counting graph backend, timings."""

from __future__ import annotations

import numpy as np
import torch

from ppx_desktop.engine.generator import Generator, GeneratorOptions, GenState


def started(gen: Generator) -> GenState:
    """A state past the start-up frames, as a conversation is once its prompts are done."""
    cfg = gen.lm.cfg
    state = gen.init_state(1)
    user = torch.zeros(1, cfg.audio_per_stream, 1, dtype=torch.long, device=gen.device)
    while state.offset <= cfg.max_delay + 1:
        gen.step(state, user=user)
    return state


def state_at(gen: Generator, offset: int, seed: int = 0) -> GenState:
    """A state `offset` frames into a conversation, made directly instead of by stepping there:
    random tokens in the ring, random keys and values in the KV cache, the counters set, and the
    user codes a previous frame would have written for the delayed streams marked as given."""
    cfg = gen.lm.cfg
    state = gen.init_state(1)
    g = torch.Generator(device=gen.device).manual_seed(seed)
    ct = state.cache.shape[2]
    text = torch.randint(0, cfg.text_card, (1, 1, ct), generator=g, device=gen.device)
    audio = torch.randint(0, cfg.card, (1, cfg.n_q, ct), generator=g, device=gen.device)
    state.cache.copy_(torch.cat([text, audio], dim=1))
    state.provided.zero_()
    state.provided_host = [[False] * ct for _ in range(cfg.num_streams)]
    for k in range(1 + cfg.audio_per_stream, cfg.num_streams):
        for position in range(offset, offset + cfg.delays[k]):  # pending user codes of delayed streams
            state.provided[:, k, position % ct] = True
            state.provided_host[k][position % ct] = True
    for t in state.lm.keys + state.lm.values:
        t.normal_(generator=g)
    state.lm.offset.fill_(offset - 1)  # the temporal pass has run once per frame after the first
    state.offset = offset
    return state


def kv_part(capacity: int, options: GeneratorOptions | None = None) -> int:
    """Slots in the first KV part attention reads (the first graph's boundary)."""
    return -(-capacity // (options or GeneratorOptions()).kv_buckets)


class CountingGraphs:
    """A graph backend (engine/graphs.py) that counts its captures."""

    def __init__(self, inner):
        self.inner, self.captures = inner, 0

    def capture(self, frame):
        out = self.inner.capture(frame)
        self.captures += 1
        return out

    def release(self) -> None:
        self.inner.release()


def graph_backend(run):
    """Real CUDA graphs on a GPU; the eager stand-in (same capture procedure) in the dry run."""
    from ppx_desktop.engine.graphs import CudaGraphs, EagerGraphs

    return CountingGraphs(CudaGraphs(run.device) if run.cuda else EagerGraphs())


def frame(fs, state: GenState, codec, pcm: np.ndarray) -> tuple[int, torch.Tensor, np.ndarray]:
    """One frame: (text id, the token ring after it `[17, CT]` on the host, the agent's audio)."""
    result = fs(state, codec, pcm)
    return result.text_id, state.cache[0].cpu().clone(), result.pcm  # .cpu() of a CPU tensor is itself


def differing_frames(a, b) -> list[int]:
    """Indices of frames whose tokens differ (text id or any stream of the ring)."""
    return [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x[0] != y[0] or not torch.equal(x[1], y[1])]


def ms_stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"median_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "max_ms": round(float(ms.max()), 2)}
