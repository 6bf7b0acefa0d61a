"""Helpers shared by the engine tests: fixture paths, the tiny config, goldens and a host-sync guard.

A named module, not conftest.py: several test folders have their own conftest.py, and
``from conftest import ...`` then resolves to whichever one was imported first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

FIXTURES = Path(__file__).parent / "fixtures"

# The reference's SILENCE/SINE frames reduced mod 32 for the tiny codebooks, as the fixtures used.
TINY_SILENCE = [20, 19, 26, 2, 8, 6, 26, 24]
TINY_SINE = [14, 20, 29, 11, 7, 23, 24, 24]


def tiny_config_dict() -> dict:
    mimi = json.loads((FIXTURES / "tiny_mimi_config.json").read_text())
    lm = json.loads((FIXTURES / "tiny_lm_config.json").read_text())
    return {
        "format": 1,
        "mimi": {"seanet": mimi["_seanet_kwargs"], "quantizer": mimi["_quantizer_kwargs"],
                 "transformer": mimi["_transformer_kwargs"], "num_codebooks": 8},
        "lm": lm["_lm_kwargs"],
        "prompt": {"silence_tokens": TINY_SILENCE, "sine_tokens": TINY_SINE},
    }


def load_golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / name))


# --- Streaming steps must not synchronise with the host (needed for CUDA graphs / compile). ---

_SYNC_OPS = {
    "_local_scalar_dense", "is_nonzero", "item", "equal", "nonzero", "masked_select", "_unique", "_unique2",
    "unique_dim", "unique_consecutive", "bincount", "repeat_interleave",
}


class ForbidHostSync(TorchDispatchMode):
    """Fails on any op that reads a tensor value on the host or has a data-dependent output shape."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket.__name__ in _SYNC_OPS:
            raise AssertionError(f"host sync in a streaming step: {func}")
        if func.overloadpacket.__name__ == "index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        ):
            raise AssertionError(f"boolean-mask indexing (data-dependent shape) in a streaming step: {func}")
        return func(*args, **kwargs)
