"""Where and at what size the checks run, and what they share.

On a GPU: the released architecture (`ModelConfig()`) with random weights built on the device, one
model at a time (the checks that measure memory need the GPU to themselves, and the released
size in bfloat16 alone takes 16 GiB). In the dry run: the make-tiny-model architecture on the CPU,
which proves the script itself (same code, smaller sizes) in under a minute.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch

from ppx_desktop.engine.config import ModelConfig

SPEECH = "resources/speech/quant_check.wav"  # the bundled spoken question (8 s of real speech)


@dataclass(frozen=True)
class Scale:
    """How much each check runs (frames are 80 ms)."""

    replays: int  # check 3
    boundary_frames: int  # check 4, around each boundary
    seeded_frames: int  # check 5
    timed_frames: int  # check 6, per precision
    flow_frames: int  # check 7, per conversation
    offload_frames: int  # check 8
    live_frames: int  # check 9, first conversation (fed in real time)
    second_frames: int  # check 9, after the voice switch
    codec_frames: int  # check 10


GPU = Scale(replays=200, boundary_frames=12, seeded_frames=50, timed_frames=200, flow_frames=20, offload_frames=20,
            live_frames=300, second_frames=50, codec_frames=100)
# The dry run keeps the checks' structure; only what takes real time (the live feeding) is shorter.
DRY = Scale(replays=200, boundary_frames=12, seeded_frames=50, timed_frames=40, flow_frames=20, offload_frames=20,
            live_frames=40, second_frames=15, codec_frames=40)


class Models:
    """The model the checks share, built on demand: one at a time, kept until another is asked for."""

    def __init__(self, run: Run):
        self.run = run
        self._key: str | None = None
        self._model = None
        self.build_seconds: dict[str, float] = {}

    def get(self, precision: str):
        from ppx_desktop.engine.memory import PRECISIONS
        from ppx_desktop.engine.opcount import random_model

        if self._key != precision:
            self.clear()
            dtype, quant = PRECISIONS[precision]
            t0 = time.perf_counter()
            self._model = random_model(self.run.config, self.run.device, dtype, quant, seed=0)
            self.run.synchronize()
            self.build_seconds[precision] = round(time.perf_counter() - t0, 2)
            self._key = precision
        return self._model

    def take(self, precision: str):
        """The model for a check that changes it (layer offload): not shared afterwards."""
        model = self.get(precision)
        self._model = self._key = None
        return model

    def clear(self) -> None:
        self._model = self._key = None
        self.run.free()


class Run:
    """The run's settings and shared state.

    Args:
        out: the report folder (also holds the run's scratch files under `work/`).
        dry_run: CPU and the tiny architecture instead of a GPU and the released one.
        device: the CUDA device to test (default: the current one).
    """

    def __init__(self, out: Path, dry_run: bool, device: str | None = None):
        from ppx_desktop.engine.tiny import tiny_config

        self.out = out
        self.work = out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.cuda = not dry_run
        self.device = torch.device(device or "cuda") if self.cuda else torch.device("cpu")
        self.config = ModelConfig() if self.cuda else tiny_config()
        self.scale = GPU if self.cuda else DRY
        self.size = "released size (7B), random weights" if self.cuda else "tiny (make-tiny-model) architecture"
        self.repo = Path(__file__).resolve().parents[2]
        self.models = Models(self)
        self._speech: np.ndarray | None = None

    # --- shared data -------------------------------------------------------------------------
    def speech(self) -> np.ndarray:
        """The bundled speech clip, 24 kHz float32."""
        if self._speech is None:
            from ppx_desktop.audio.files import read_audio

            self._speech = read_audio(Path(str(files("ppx_desktop") / SPEECH)))
        return self._speech

    def speech_frames(self, n: int) -> np.ndarray:
        """`n` frames `[n, 1920]` of the speech clip, looped."""
        from ppx_desktop.audio.files import frames

        clip = frames(self.speech())
        return clip[np.arange(n) % len(clip)]

    # --- housekeeping ------------------------------------------------------------------------
    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def tidy(self) -> None:
        """After each check: no sync debugging or memory cap left behind, unreferenced memory freed."""
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            torch.cuda.synchronize(self.device)
        self.free()
