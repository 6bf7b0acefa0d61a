"""Fixtures for the whole suite; importable helpers live in testkit.py (see there why)."""

from __future__ import annotations

import os
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


# --- Tests that measure real-time audio get the machine to themselves. ---
# With two xdist workers on two cores, a torch-heavy test beside the PulseAudio tier made
# paplay and the capture miss deadlines (correlation 0.98, echo fits off): the audio was torn by
# the machine, not by the code under test. Tests marked `exclusive` hold a file lock that the
# other worker's tests share, so they run alone (the other worker finishes its current test
# first, then waits). A gate lock keeps new shared holders out while an exclusive one waits.


@pytest.fixture(autouse=True)
def _machine_share(request, tmp_path_factory):
    try:
        import fcntl
    except ImportError:  # not on Windows; the tier needs PulseAudio anyway
        fcntl = None
    if fcntl is None or not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    root = tmp_path_factory.getbasetemp().parent  # shared by the workers of one run
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with open(root / "machine.gate", "a+") as gate, open(root / "machine.lock", "a+") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        if exclusive:
            fcntl.flock(lock, fcntl.LOCK_EX)  # still holding the gate: no other test starts meanwhile
        else:
            fcntl.flock(lock, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)
