"""Counting tensor memory by allocation, not by time: live bytes and their peak under a dispatch mode.

`LiveBytes` sees every ATen operation run while it is active. An output whose storage is new
(not one of the operation's inputs, not one already counted) is an allocation: its bytes count
as live until the last tensor counted on that storage dies (views made inside the mode keep it
alive, as they do for real). Storages that existed before the mode are not counted.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage(t: torch.Tensor) -> tuple[int, int]:
    st = t.untyped_storage()
    return st.data_ptr(), st.nbytes()


class LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self.allocations = 0
        self._refs: dict[int, list[int]] = {}  # storage address -> [bytes, tensors counted on it]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {_storage(t)[0] for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            ptr, nbytes = _storage(t)
            rec = self._refs.get(ptr)
            if rec is None:
                if ptr in inputs or nbytes == 0:
                    continue  # an alias of a tensor from before, or nothing allocated
                rec = self._refs[ptr] = [nbytes, 0]
                self.live += nbytes
                self.allocations += 1
                self.peak = max(self.peak, self.live)
            rec[1] += 1
            weakref.finalize(t, self._release, ptr)
        return out

    def _release(self, ptr: int) -> None:
        rec = self._refs[ptr]
        rec[1] -= 1
        if rec[1] == 0:
            self.live -= rec[0]
            del self._refs[ptr]


def census() -> tuple[int, int]:
    """(bytes of every live tensor storage and numpy buffer, number of Python objects) in this
    process, each storage counted once: what a leak would make grow."""
    gc.collect()
    seen: dict[int, int] = {}
    objects = gc.get_objects()
    # Arrays are not tracked by the collector themselves; the containers holding them are.
    for obj in [*objects, *gc.get_referents(*objects)]:
        kind = type(obj)  # not isinstance: lazy module attributes answer it with warnings
        if issubclass(kind, torch.Tensor) and not obj.is_meta:
            try:
                ptr, nbytes = _storage(obj)
            except RuntimeError:  # fake or functional tensors other tests left behind hold no memory
                continue
            seen[ptr] = nbytes
        elif issubclass(kind, np.ndarray) and obj.base is None:
            seen[obj.ctypes.data] = obj.nbytes
    return sum(seen.values()), len(objects)
