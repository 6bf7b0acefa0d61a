"""Helpers of the CUDA tier (a named module: `conftest` would resolve to tests/conftest.py)."""

from __future__ import annotations

import types

import torch
from testkit import FIXTURES, tiny_config_dict


def cuda_missing_reason() -> str | None:
    """Why CUDA tests cannot run here (None: they can)."""
    if torch.version.cuda is None:
        return f"needs CUDA: this PyTorch ({torch.__version__}) is a CPU-only build"
    if not torch.cuda.is_available():
        return "needs CUDA: no NVIDIA GPU is visible (check the driver with nvidia-smi)"
    return None


def int4_missing_reason() -> str | None:
    from ppx_desktop.engine.quant import INT4_MIN_CAPABILITY

    cap = torch.cuda.get_device_capability()
    if cap < INT4_MIN_CAPABILITY:
        return f"int4 needs compute capability 8.0 or newer; this GPU has {cap[0]}.{cap[1]}"
    return None


def tiny_reference():
    """The tiny fixture model (the reference's weights) on the CPU."""
    from ppx_desktop.engine.checkpoint import lm_plan, load_weights
    from ppx_desktop.engine.config import ModelConfig
    from ppx_desktop.engine.lm import LMModel
    from ppx_desktop.engine.mimi import Mimi

    config = ModelConfig.from_dict(tiny_config_dict())
    mimi, lm = Mimi(config.mimi, device="meta"), LMModel(config.lm, device="meta")
    load_weights(mimi, FIXTURES / "tiny_mimi.safetensors", dtype=torch.float32)
    load_weights(lm, FIXTURES / "tiny_lm.safetensors", dtype=torch.float32, plan_fn=lm_plan)
    return types.SimpleNamespace(config=config, mimi=mimi.eval(), lm=lm.eval(), device=torch.device("cpu"))


def on_cuda(model, lm=None):
    """The same model on the GPU (optionally with another LM, e.g. one quantised there)."""
    from ppx_desktop.engine.lm import LMModel
    from ppx_desktop.engine.mimi import Mimi

    mimi = Mimi(model.config.mimi, device="cuda")
    mimi.load_state_dict(model.mimi.state_dict())
    if lm is None:
        lm = LMModel(model.config.lm, device="cuda")
        lm.load_state_dict(model.lm.state_dict())
    return types.SimpleNamespace(config=model.config, mimi=mimi.eval(), lm=lm.eval(), device=torch.device("cuda"))
