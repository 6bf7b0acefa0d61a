"""Loading the speech-to-text model beside PersonaPlex for the app: where it is, whether it fits.

The model comes from the PersonaPlex model folder's `stt/` (the tiny demo model has one) or from
the download (`ppx-desktop download --with-transcription`). On a GPU it takes the largest
precision (bfloat16, int8, int4) that the free memory left beside the loaded PersonaPlex holds,
by the memory planner's figure for it (engine/memory.py); when even int4 does not fit, the
transcript stays off and the reason says what would make room.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..engine.memory import GiB, transcription_bytes
from ..engine.stt_config import STT_CONFIG, load_stt_config
from ..engine.transcriber import Transcriber

MARGIN = 256 * 2**20  # allocator slack kept free beside both models


def find_stt_model(model_dir: Path | None) -> Path | None:
    from ..assets.stt_model import find_stt_dir

    if model_dir is not None and (Path(model_dir) / "stt" / STT_CONFIG).is_file():
        return Path(model_dir) / "stt"
    return find_stt_dir()


def transcription_reserve(model_dir: Path | None) -> int:
    """GPU bytes to leave for the speech-to-text model when choosing PersonaPlex's precision: its
    smallest (int4) figure, or 0 when it is not downloaded (or there is no GPU)."""
    stt_dir = find_stt_model(model_dir)
    if stt_dir is None or not torch.cuda.is_available():
        return 0
    return transcription_bytes(load_stt_config(stt_dir), "int4") + MARGIN


def load_transcriber(model, model_dir: Path | None) -> tuple[Transcriber | None, str]:
    """(the transcriber, "") or (None, why not) for a loaded PersonaPlex `model`."""
    from ..engine.quant import available_quants
    from ..engine.stt_load import load_stt

    stt_dir = find_stt_model(model_dir)
    if stt_dir is None:
        return None, ("the speech-to-text model is not downloaded. Download it in the first-run dialog or with "
                      "`ppx-desktop download --with-transcription` (about 2 GB)")
    config = load_stt_config(stt_dir)
    device = model.device
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0] - MARGIN
        options = [("bfloat16" if q == "none" else q, q) for q in available_quants(device)]
        fits = [(name, q) for name, q in options if transcription_bytes(config, name) <= free]
        if not fits:
            need = transcription_bytes(config, options[-1][0])
            return None, (f"the speech-to-text model needs {need / GiB:.1f} GiB beside PersonaPlex but only "
                          f"{max(free, 0) / GiB:.1f} GiB is free. Choose a smaller precision or a shorter context "
                          "in Settings, or close other programs using the GPU")
        name, quant = fits[0]
        stt = load_stt(stt_dir, device=str(device), dtype=torch.bfloat16, quant=quant)
    else:
        name = str(model.dtype).removeprefix("torch.")
        stt = load_stt(stt_dir, device=str(device), dtype=model.dtype)
    transcriber = Transcriber(stt)
    transcriber.precision = name
    return transcriber, ""
