"""A whole session's device memory, measured: the flow that must fit the memory plan.

`run_memory_flow` loads a model (random weights: on the meta device the released 7B model needs no
memory), starts a conversation (prompt phases, warm-up and capture of every graph), runs frames,
starts a second conversation with another voice the way the inference worker does, and records a
custom voice, all under the live-bytes tracker (engine/memtrack.py). Captured graphs run through
the eager stand-in (engine/graphs.py), whose pool the tracker counts as CUDA would.

The report holds the peak and the live bytes after each phase, next to the planner's figure
(engine/memory.py) for the same model, precision and context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.config import FRAME_SIZE
from ..engine.generator import Generator
from ..engine.graphs import EagerGraphs
from ..engine.memory import GiB, MemoryPlan, plan_memory, precision_name
from ..engine.memtrack import LiveBytes, Mark
from ..engine.opcount import random_model
from ..engine.prefill import Prefiller
from ..engine.prompts import VoicePrompt
from ..engine.sampling import SamplingConfig
from .statecache import PromptStateCache
from .worker import next_conversation


@dataclass
class MemoryReport:
    device: str
    precision: str
    context: int
    peak: int
    marks: list[Mark]
    plan: MemoryPlan
    graph_pools: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "device": self.device, "precision": self.precision, "context": self.context,
            "peak_gib": self.peak / GiB, "planned_gib": self.plan.total / GiB,
            "planned_device_gib": self.plan.device_bytes / GiB, "cuda_context_gib": self.plan.cuda_context / GiB,
            "plan": self.plan.parts_gib(),
            "phases": [{"phase": m.label, "live_gib": m.live / GiB, "peak_gib": m.peak / GiB} for m in self.marks],
            "graph_pools_gib": {k: v / GiB for k, v in self.graph_pools.items()},
        }


def _voice(name: str, seconds: float, seed: int) -> VoicePrompt:
    rng = np.random.default_rng(seed)
    frames = int(seconds * 12.5)
    return VoicePrompt(name, frames=(0.05 * rng.standard_normal((frames, FRAME_SIZE))).astype(np.float32))


def run_memory_flow(config, device: torch.device, dtype: torch.dtype, quant: str = "none", *,
                    frames: int = 20, voice_seconds: float = 2.0, custom_voice_seconds: float = 10.0,
                    graphs=None) -> MemoryReport:
    """Load, first conversation (with warm-up and capture), `frames` frames, a second conversation,
    a custom voice of `custom_voice_seconds`: the measured peak and the plan.

    `graphs`: the graph backend (default: the eager stand-in, its pool counted by the tracker; on a
    GPU, `graphs.CudaGraphs` captures real graphs, whose memory `torch.cuda` statistics then show)."""
    device = torch.device(device)
    tracker = LiveBytes(device.type)
    silence = np.zeros(FRAME_SIZE, np.float32)
    with torch.no_grad(), tracker:
        model = random_model(config, device, dtype, quant, untracked=tracker.paused)
        tracker.mark("load")
        cache = PromptStateCache(folder=None)
        conv = next_conversation(None, model, SamplingConfig(), 0, cache, capture="cuda-graph",
                                 graphs=graphs if graphs is not None else EagerGraphs(tracker))
        conv.start(_voice("voice A", voice_seconds, 1), "")
        tracker.mark("first conversation: prompts, warm-up and capture")
        for _ in range(frames):
            conv.step_ids(silence)
        tracker.mark(f"{frames} frames")
        conv = next_conversation(conv, model, SamplingConfig(), 1, cache)
        conv.start(_voice("voice B", voice_seconds, 2), "")
        for _ in range(frames):
            conv.step_ids(silence)
        tracker.mark("second conversation")
        # What `voices add` / Add voice does before saving the file (assets/voices.py).
        Prefiller(Generator(model.lm, SamplingConfig.greedy())).voice_file(model.config.prompt, model.mimi,
                                                                          _voice("custom", custom_voice_seconds, 3))
        tracker.mark("custom voice")
        pools = tracker.pools
    plan = plan_memory(config, precision_name(dtype, quant), device_type="cuda" if device.type == "meta" else
                       device.type)
    return MemoryReport(device.type, plan.precision, config.lm.context, tracker.peak, tracker.marks, plan, pools)
