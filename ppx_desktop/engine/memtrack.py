"""Live device memory, followed allocation by allocation, on any device (meta included).

`LiveBytes` is a dispatch mode that sees every tensor storage created on one device type while it
is active and frees it again when the storage dies (a weakref on the storage object), so it can
measure the peak of a whole flow (load, warm-up and capture, frames, a conversation switch, a
voice creation) of the released 7B model on the meta device, without the memory. That makes the
memory planner (memory.py) testable here: its figure must cover what this measures.

Two CUDA facts are modelled, so the meta figure stands for what `torch.cuda.max_memory_reserved`
would report:
- the caching allocator's rounding (`round_allocation`): blocks of 512 bytes, and tensors of
  10 MiB or more in whole 2 MiB pages (smaller ones share 2 and 20 MiB segments);
- CUDA graph pools: memory allocated while a graph is captured stays reserved by the graph's
  pool up to its high-water mark until the graph is released (`pool()` regions; see framestep's
  graph backends), while blocks freed inside the capture are reused within it;
- attention is one fused kernel (as on CUDA), not the meta device's math decomposition.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_flatten

from .bytetrace import FusedAttentionMode

MiB = 2**20
_PAGE = 2 * MiB
_LARGE = 10 * MiB
_BLOCK = 512


def round_allocation(nbytes: int) -> int:
    """Bytes the CUDA caching allocator reserves for a request of `nbytes`."""
    if nbytes >= _LARGE:
        return -(-nbytes // _PAGE) * _PAGE
    return max(_BLOCK, -(-nbytes // _BLOCK) * _BLOCK)


@dataclass
class _Pool:
    live: int = 0
    high: int = 0  # what the pool keeps reserved


@dataclass
class Mark:
    label: str
    live: int
    peak: int


class LiveBytes(FusedAttentionMode):
    """Follows storages created on `device_type` while active.

    Attributes:
        live: bytes held now (rounded like the CUDA allocator), graph pools included.
        peak: the largest `live` seen.
        marks: `mark(label)` snapshots, for a report per phase.
    """

    def __init__(self, device_type: str = "meta"):
        super().__init__()
        self.device_type = device_type
        self.live = 0
        self.peak = 0
        self.marks: list[Mark] = []
        self._sizes: dict[int, tuple[int, str | None]] = {}  # storage id -> (bytes, pool)
        self._pools: dict[str, _Pool] = {}
        self._pool_stack: list[str] = []
        self._phase_peak = 0
        self._paused = False

    def _attention_kernel(self, args, kwargs, out) -> None:
        if not self._paused:
            self._track(out)

    # --- bookkeeping ---------------------------------------------------------------------
    def _add(self, n: int) -> None:
        self.live += n
        self.peak = max(self.peak, self.live)
        self._phase_peak = max(self._phase_peak, self.live)

    def _track(self, t: torch.Tensor) -> None:
        if t.device.type != self.device_type:
            return
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self._sizes:
            return
        n = round_allocation(storage.nbytes())
        pool = self._pool_stack[-1] if self._pool_stack else None
        self._sizes[key] = (n, pool)
        if pool is None:
            self._add(n)
        else:
            p = self._pools[pool]
            p.live += n
            if p.live > p.high:
                self._add(p.live - p.high)
                p.high = p.live
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        n, pool = self._sizes.pop(key, (0, None))
        if pool is None:
            self.live -= n
        elif pool in self._pools:
            self._pools[pool].live -= n  # reusable within the pool; the pool stays reserved

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self._paused:
            return out
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    @contextlib.contextmanager
    def paused(self):
        """Tensors made inside are never counted: shape templates on the meta device, which a
        real load keeps off the GPU (modules are built on meta and filled on the device)."""
        self._paused, before = True, self._paused
        try:
            yield
        finally:
            self._paused = before

    # --- graph pools -----------------------------------------------------------------------
    @contextlib.contextmanager
    def pool(self, name: str):
        """Allocations inside belong to graph pool `name` (a capture, or a replay's temporaries)."""
        self._pools.setdefault(name, _Pool())
        self._pool_stack.append(name)
        try:
            yield
        finally:
            self._pool_stack.pop()

    def release_pool(self, name: str) -> None:
        """The graphs of pool `name` were destroyed: their reserved memory is free again."""
        p = self._pools.pop(name, None)
        if p is not None:
            self.live -= p.high

    @property
    def pools(self) -> dict[str, int]:
        return {name: p.high for name, p in self._pools.items()}

    # --- reporting -------------------------------------------------------------------------
    def mark(self, label: str) -> Mark:
        """Records the live bytes now and the peak since the previous mark."""
        m = Mark(label, self.live, self._phase_peak)
        self.marks.append(m)
        self._phase_peak = self.live
        return m

    def add_existing(self, tensors) -> None:
        """Counts tensors made before tracking started (e.g. a model built earlier)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._track(t)
