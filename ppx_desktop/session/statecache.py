"""Generator states after the prompt phases, kept so a conversation starts instantly.

A full streaming state holds the whole 3000-slot KV cache (1.6 GB for the 7B model in bf16),
but after the prompts only the first few hundred slots are written. A `PromptState` keeps just
those (tens of MB), in host memory, pinned when the model runs on a GPU: cached states cost the
GPU nothing, and applying one is a few host-to-device copies into the live state's buffers.

Two levels are cached: after the voice phase (keyed by model and voice), so switching the
persona prompt re-runs only the text phases, and after all phases (model, voice and prompt).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.generator import GenState

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class PromptState:
    """The used part of a GenState: token ring, forced flags, counters and written KV slots."""

    cache: torch.Tensor
    provided: torch.Tensor
    provided_host: list[list[bool]]
    offset: int
    lm_offset: int
    keys: list[torch.Tensor]  # per layer [B, H, n, D], n = written slots
    values: list[torch.Tensor]

    @classmethod
    def capture(cls, state: GenState) -> PromptState:
        """The written part of `state`, copied to host memory."""
        # The temporal pass runs once per call after a reset's first: the host mirror gives the
        # device offset without reading it.
        lm_offset = max(state.offset - 1, 0)
        slots = min(lm_offset, state.lm.keys[0].shape[2])
        snap = cls(_to_host(state.cache), _to_host(state.provided), [row[:] for row in state.provided_host],
                   state.offset, lm_offset, [_to_host(k[:, :, :slots]) for k in state.lm.keys],
                   [_to_host(v[:, :, :slots]) for v in state.lm.values])
        if state.cache.is_cuda:
            torch.cuda.current_stream(state.cache.device).synchronize()  # the copies were asynchronous
        return snap

    def apply(self, state: GenState) -> None:
        """Writes this snapshot into `state` in place (its buffers keep their addresses)."""
        state.cache.copy_(self.cache, non_blocking=True)
        state.provided.copy_(self.provided, non_blocking=True)
        state.provided_host = [row[:] for row in self.provided_host]
        state.offset = self.offset
        # Slots past the written ones hold stale values; the attention masks them by offset.
        for dst, src in zip(state.lm.keys + state.lm.values, self.keys + self.values):
            dst[:, :, :src.shape[2]].copy_(src, non_blocking=True)  # from pinned memory, kept alive by self
        state.lm.offset.fill_(self.lm_offset)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.cache, self.provided, *self.keys, *self.values))

    # --- disk format: one safetensors file, counters in its metadata ------------------------
    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {"cache": self.cache, "provided": self.provided}
        for i, (k, v) in enumerate(zip(self.keys, self.values)):
            tensors[f"k{i}"], tensors[f"v{i}"] = k, v
        meta = {"format": str(FORMAT), "offset": str(self.offset), "lm_offset": str(self.lm_offset),
                "layers": str(len(self.keys)), "provided_host": json.dumps(self.provided_host)}
        tmp = path.with_name(path.name + ".partial")
        save_file({k: t.detach().contiguous().cpu() for k, t in tensors.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, device: torch.device) -> PromptState:
        """Reads a saved state into host memory (pinned if `device` is a GPU)."""
        from safetensors import safe_open

        pin = torch.device(device).type == "cuda"
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != str(FORMAT):
                raise ValueError(f"{path}: unknown state cache format")
            layers = int(meta["layers"])
            t = {name: f.get_tensor(name).pin_memory() if pin else f.get_tensor(name)
                 for name in f.keys()}  # noqa: SIM118 (safe_open API)
        return cls(t["cache"], t["provided"], json.loads(meta["provided_host"]), int(meta["offset"]),
                   int(meta["lm_offset"]), [t[f"k{i}"] for i in range(layers)], [t[f"v{i}"] for i in range(layers)])


def _to_host(t: torch.Tensor) -> torch.Tensor:
    """A host copy of `t`: pinned for a GPU tensor (fast, asynchronous copies both ways); for a
    meta tensor (memory traces) an uninitialised host tensor of its shape."""
    if t.device.type == "cpu":
        return t.clone()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
    if not t.is_meta:
        host.copy_(t, non_blocking=True)
    return host
def misfit(snap: PromptState, state: GenState) -> str | None:
    """Why a snapshot read from disk cannot be applied to `state` (None if it can): a file from
    another model or version, or hand-edited, loads fine and then fails inside `apply`."""
    if snap.cache.shape != state.cache.shape or snap.cache.dtype != state.cache.dtype:
        return f"token cache {list(snap.cache.shape)} instead of {list(state.cache.shape)}"
    if snap.provided.shape != state.provided.shape or snap.provided.dtype != state.provided.dtype:
        return f"forced-token flags {list(snap.provided.shape)} instead of {list(state.provided.shape)}"
    if [len(r) for r in snap.provided_host] != [len(r) for r in state.provided_host] or not all(
            isinstance(x, bool) for r in snap.provided_host for x in r):
        return "forced-token flags on the host do not match"
    if len(snap.keys) != len(state.lm.keys) or len(snap.values) != len(state.lm.values):
        return f"{len(snap.keys)} layers instead of {len(state.lm.keys)}"
    slots = min(snap.lm_offset, state.lm.keys[0].shape[2])
    if snap.offset < 0 or snap.lm_offset < 0:
        return "negative counters"
    for name, got, want in (("keys", snap.keys, state.lm.keys), ("values", snap.values, state.lm.values)):
        for t, dst in zip(got, want):
            expected = (*dst.shape[:2], slots, dst.shape[3])
            if tuple(t.shape) != expected or t.dtype != dst.dtype:
                return f"{name} of shape {list(t.shape)} ({t.dtype}) instead of {list(expected)} ({dst.dtype})"
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return f"{name} hold NaN or infinite values"
    return None


def fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def file_identity(path: Path) -> tuple:
    """Cheap identity of a big file (the checkpoints): path, size and modification time."""
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


class PromptStateCache:
    """An in-memory LRU of PromptStates, optionally backed by a folder of safetensors files.

    Disk files are a cache: a corrupt or unreadable one is deleted and recomputed, never fatal.
    """

    def __init__(self, folder: Path | None = None, max_memory_entries: int = 4, max_disk_entries: int = 16):
        self.folder = folder
        self.max_memory_entries = max_memory_entries
        self.max_disk_entries = max_disk_entries
        self._memory: OrderedDict[str, PromptState] = OrderedDict()
        self._misfits: list[tuple[str, str]] = []

    def take_notes(self) -> list[str]:
        """What the cache did since the last call that the user should hear of, in one sentence:
        files that did not fit were deleted (so the next start does not say it again)."""
        misfits, self._misfits = self._misfits, []
        if not misfits:
            return []
        names = ", ".join(name for name, _ in misfits)
        return [f"the saved prompt state{'s' if len(misfits) > 1 else ''} {names} in {self.folder} did not fit this "
                f"model ({misfits[0][1]}): deleted, and the prompts ran again"]

    def get(self, key: str, device: torch.device, like: GenState | None = None) -> PromptState | None:
        """The snapshot for `key`, or None; with `like`, a disk file that does not fit that state is
        deleted (and said so once: the next start recomputes and saves a good one)."""
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        if self.folder is None:
            return None
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            return None
        try:
            snap = PromptState.load(path, device)
        except Exception as exc:  # a damaged cache file must never stop a conversation
            log.warning("dropping unreadable state cache file %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        why = misfit(snap, like) if like is not None else None
        if why is not None:
            log.warning("deleting state cache file %s: it does not fit this model (%s)", path, why)
            self._misfits.append((path.name, why))
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used: survives the pruning longer
        self._remember(key, snap)
        return snap

    def put(self, key: str, snap: PromptState, persist: bool = True) -> None:
        self._remember(key, snap)
        if self.folder is None or not persist:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            snap.save(self.folder / f"{key}.safetensors")
            self._prune()
        except OSError as exc:  # e.g. disk full: the cache is an optimisation only
            log.warning("could not save the prompt state cache: %s", exc)

    def clear_memory(self) -> None:
        self._memory.clear()

    def _remember(self, key: str, snap: PromptState) -> None:
        self._memory[key] = snap
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_memory_entries:
            self._memory.popitem(last=False)

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.safetensors"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in files[self.max_disk_entries:]:
            old.unlink(missing_ok=True)
