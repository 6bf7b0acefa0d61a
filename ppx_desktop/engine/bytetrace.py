"""Bytes each kernel of a frame reads and writes, counted by a dispatch mode (CPU or meta device).

At batch 1 a frame's time on a GPU is set by the bytes it moves, so this trace is the proxy for
GPU speed that any machine can measure: an accidental float copy of a quantised weight, a
re-read of the KV cache or an upcast inside attention shows up as a number, not as a guess.

Counting rules (a tensor's bytes are its own extent, `numel * element_size`, so a view of the
first 750 KV slots counts 750 slots):
- views and metadata ops move nothing;
- gathers (`embedding`, `index_select`, `gather`) read only the rows or elements they fetch;
- scatters (`index_copy_`, `index_put_`, `scatter_`) write only what they put;
- `copy_` reads its source and writes its destination; other in-place ops read their inputs and
  write the mutated tensor; everything else reads its inputs and writes its outputs.
Kernels a GPU fuses (none, in a CUDA graph of eager kernels) would move less: this is the bound
the captured frame pays.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

_FREE = {"detach", "lift_fresh", "_local_scalar_dense", "_unsafe_view", "empty", "empty_strided", "empty_like",
         "set_", "resize_"}
_GATHERS = {"embedding", "index_select", "gather"}
_SCATTERS = {"index_copy_", "index_copy", "index_put_", "index_put", "scatter_", "scatter", "scatter_add_",
             "index_fill_", "masked_scatter_"}


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


@dataclass
class KernelBytes:
    op: str
    read: int
    written: int
    outputs: list[tuple[tuple[int, ...], torch.dtype]]


class FusedAttention(TorchFunctionMode):
    """Treats `scaled_dot_product_attention` as the one fused kernel it is on CUDA (efficient or
    flash attention) and on the CPU: on the meta device it would decompose into the math path,
    whose float32 copies of K and V (and their memory) no GPU frame pays. The call runs with the
    dispatch modes suspended; `seen(args, kwargs, out)` then accounts for it as one kernel."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        with _disable_current_modes():
            out = func(*args, **kwargs)
        self.seen(args, kwargs, out)
        return out


class FusedAttentionMode(TorchDispatchMode):
    """A dispatch mode that also sees attention as one kernel (`FusedAttention`): subclasses get
    `_attention_kernel(args, kwargs, out)` for each call."""

    def __init__(self):
        super().__init__()
        self._attention = FusedAttention(self._attention_kernel)

    def _attention_kernel(self, args, kwargs, out) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._attention.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._attention.__exit__(*exc)


class ByteTrace(FusedAttentionMode):
    """Records every kernel dispatched while active: `with ByteTrace() as trace: frame()`."""

    def __init__(self):
        super().__init__()
        self.kernels: list[KernelBytes] = []

    def _attention_kernel(self, args, kwargs, out) -> None:
        inputs = _distinct(tree_flatten((args, kwargs))[0])
        self.kernels.append(KernelBytes("scaled_dot_product_attention", sum(nbytes(t) for t in inputs), nbytes(out),
                                        [(tuple(out.shape), out.dtype)]))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if func.is_view or name in _FREE:
            return out
        inputs = _distinct(tree_flatten((args, kwargs))[0])
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.kernels.append(KernelBytes(name, *self._count(func, name, args, inputs, outputs),
                                        [(tuple(t.shape), t.dtype) for t in outputs]))
        return out

    @staticmethod
    def _count(func, name: str, args, inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> tuple[int, int]:
        written_args = [args[i] for i, a in enumerate(func._schema.arguments)
                        if a.alias_info is not None and a.alias_info.is_write and i < len(args)
                        and isinstance(args[i], torch.Tensor)]
        if name in _GATHERS:
            index = args[1] if name == "embedding" else args[2]
            moved = sum(nbytes(t) for t in outputs)
            return nbytes(index) + moved, moved
        if name in _SCATTERS:
            dst = args[0]
            others = [t for t in inputs if t is not dst]
            if name.startswith("scatter") and len(args) > 3 and not isinstance(args[3], torch.Tensor):
                written = args[2].numel() * dst.element_size()  # scatter of a scalar: one per index
            else:
                written = sum(nbytes(t) for t in others if t.dtype == dst.dtype) or nbytes(others[-1])
            return sum(nbytes(t) for t in others), written
        if name == "copy_":
            return nbytes(args[1]), nbytes(args[0])
        if name in ("fill_", "zero_"):
            return 0, nbytes(args[0])
        if written_args:
            return sum(nbytes(t) for t in inputs), sum(nbytes(t) for t in _distinct(written_args))
        return sum(nbytes(t) for t in inputs), sum(nbytes(t) for t in outputs)

    # --- summaries ---------------------------------------------------------------------------
    @property
    def read(self) -> int:
        return sum(k.read for k in self.kernels)

    @property
    def written(self) -> int:
        return sum(k.written for k in self.kernels)

    @property
    def total(self) -> int:
        """Bytes moved: read plus written."""
        return self.read + self.written

    def by_op(self) -> dict[str, tuple[int, int, int]]:
        """op -> (kernels, bytes read, bytes written), largest movers first."""
        acc: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for k in self.kernels:
            row = acc[k.op]
            row[0] += 1
            row[1] += k.read
            row[2] += k.written
        return dict(sorted(((op, tuple(v)) for op, v in acc.items()), key=lambda kv: -(kv[1][1] + kv[1][2])))

    def float_outputs(self, shapes: set[tuple[int, ...]]) -> list[KernelBytes]:
        """Kernels that wrote a floating-point tensor of one of `shapes` (a dequantised weight)."""
        return [k for k in self.kernels
                if any(dtype.is_floating_point and shape in shapes for shape, dtype in k.outputs)]


def _distinct(items) -> list[torch.Tensor]:
    seen, result = set(), []
    for t in items:
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            result.append(t)
    return result


def trace_bytes(fn, *args, **kwargs) -> ByteTrace:
    """Runs `fn(*args, **kwargs)` once under a ByteTrace and returns it."""
    trace = ByteTrace()
    with trace:
        fn(*args, **kwargs)
    return trace
