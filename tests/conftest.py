"""Fixtures for the whole suite; importable helpers live in testkit.py (see there why)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testkit import tiny_config_dict

from ppx_desktop.engine.config import ModelConfig

# Tiny models: one thread is faster (no OpenMP hand-offs on 2 shared cores) and is what the
# reference goldens were made with.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig.from_dict(tiny_config_dict(), source="tiny fixture config")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


# --- Per-user folders: tests never touch the real home, the HF cache or saved settings. ---


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("ppx-home")
    monkeypatch.setenv("PPX_DESKTOP_HOME", str(home / "data"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A `make-tiny-model` directory (official layout, four preset voices), built once per worker."""
    from ppx_desktop.engine.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", seed=3)
