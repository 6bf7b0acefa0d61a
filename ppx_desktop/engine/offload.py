"""Temporal layers kept in host memory and streamed to the GPU, for GPUs too small even for int8.

Each offloaded layer's tensors live in (pinned) host memory. Before the layer runs, they are
copied into one of two device staging sets, and the layer's parameters and buffers point there;
while one layer computes, the next offloaded layer is copied on a side stream into the other set
(double buffering), and after the last one the first is fetched again for the next frame.

Every frame then moves the offloaded bytes over PCIe (about 25 GB/s on PCIe 4.0 x16): with more
than a few layers offloaded a frame takes longer than its 80 ms, so this serves the turn-based
modes only (live duplex refuses it), and `OffloadPlan.summary()` says the slowdown before loading.
The hooks run Python between layers, so an offloaded model runs eagerly (no CUDA graph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import FRAME_RATE

PCIE_BYTES_PER_S = 25e9  # PCIe 4.0 x16 host-to-device, as measured by typical pinned copies
FRAME_MS = 1000.0 / FRAME_RATE


@dataclass(frozen=True)
class OffloadPlan:
    """Which temporal layers stay on the host, and what that costs per frame."""

    layers: tuple[int, ...]
    layer_bytes: int  # one layer's weights in the chosen precision

    @property
    def bytes_per_frame(self) -> int:
        return len(self.layers) * self.layer_bytes

    @property
    def transfer_ms(self) -> float:
        """The copies alone per frame, at PCIe 4.0 x16 speed (a lower bound of the frame time)."""
        return 1e3 * self.bytes_per_frame / PCIE_BYTES_PER_S

    def summary(self) -> str:
        n, gib = len(self.layers), self.bytes_per_frame / 2**30
        slow = self.transfer_ms / FRAME_MS
        pace = (f"at least {self.transfer_ms:.0f} ms per 80 ms frame, about {slow:.1f}x slower than real time"
                if slow >= 1 else f"at least {self.transfer_ms:.0f} ms of copies per 80 ms frame")
        return (f"{n} of the model's layers stay in host memory and stream to the GPU every frame "
                f"({gib:.1f} GiB over PCIe): {pace}. Turn-based modes only; live duplex needs the whole "
                "model on the GPU.")

    def keeps_on_host(self, key: str) -> bool:
        """True for the state-dict keys of offloaded layers (loading puts them on the host)."""
        return any(key.startswith(f"transformer.layers.{i}.") for i in self.layers)


def layer_bytes(config, dtype: torch.dtype, quant: str = "none") -> int:
    """Bytes of one temporal layer's weights in `dtype` with `quant` linear layers."""
    from .lm import LMModel
    from .quant import convert_for_quant

    lm = LMModel(config.lm, device="meta", dtype=dtype)
    convert_for_quant(lm, quant)
    layer = lm.transformer.layers[0]
    return sum(t.numel() * t.element_size() for t in [*layer.parameters(), *layer.buffers()])


def plan_offload(config, free_bytes: int, dtype: torch.dtype, quant: str = "none",
                 layers: int | None = None) -> OffloadPlan:
    """The last `layers` temporal layers (None: as few as make the model fit in `free_bytes`,
    counting the two staging sets on the device). Raises ValueError when even all do not fit."""
    from .memory import plan_memory, precision_name

    per_layer = layer_bytes(config, dtype, quant)
    total = config.lm.num_layers
    if layers is None:
        excess = plan_memory(config, precision_name(dtype, quant)).total - free_bytes
        layers = 0 if excess <= 0 else math.ceil((excess + 2 * per_layer) / per_layer)
    if not 0 <= layers <= total:
        raise ValueError(f"the model does not fit in {free_bytes / 2**30:.1f} GiB of GPU memory even with all "
                         f"{total} layers in host memory: use a GPU with more memory, or the CPU")
    return OffloadPlan(tuple(range(total - layers, total)), per_layer)


class LayerStreamer:
    """Installs the streaming on `lm`'s offloaded temporal layers (their tensors already on the host).

    Args:
        lm: the loaded LMModel; `lm.streamer` is set to this object.
        plan: which layers to stream.
        device: where the layers compute.
    """

    def __init__(self, lm: nn.Module, plan: OffloadPlan, device: torch.device):
        self.plan, self.device = plan, torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.layers = [lm.transformer.layers[i] for i in plan.layers]
        self.host: list[dict[str, torch.Tensor]] = []
        for layer in self.layers:
            # detach(): new tensor objects on the same storage, kept when the parameters are
            # pointed at the staging sets below.
            tensors = {name: t.detach() for name, t in _named_tensors(layer)}
            if self.cuda:
                tensors = {name: t.pin_memory() for name, t in tensors.items()}
            self.host.append(tensors)
        self.staging = [{name: torch.empty_like(t, device=self.device) for name, t in self.host[0].items()}
                        for _ in range(min(2, len(self.layers)))]
        self.copies = 0  # layers copied to the device so far (tests, statistics)
        self._stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._current = 0  # the staging slot of the layer running (or last run)
        self._prefetched: dict[int, tuple[int, torch.cuda.Event]] = {}  # layer -> (slot, copy done)
        self._free: list[torch.cuda.Event | None] = [None, None]  # slot no longer read by its last layer
        for k, layer in enumerate(self.layers):
            layer.register_forward_pre_hook(lambda module, args, k=k: self._before(k))
            layer.register_forward_hook(lambda module, args, out, k=k: self._after(k))
            self._point(layer, self.staging[0])
        lm.streamer = self

    def _copy(self, k: int, slot: int) -> None:
        for name, t in self.staging[slot].items():
            t.copy_(self.host[k][name], non_blocking=self.cuda)
        self.copies += 1

    def _before(self, k: int) -> None:
        if k in self._prefetched:  # copied on the side stream while the previous layer computed
            slot, ready = self._prefetched.pop(k)
            torch.cuda.current_stream(self.device).wait_event(ready)
        else:  # on the compute stream, so after everything that still reads the slot
            slot = (1 - self._current) % len(self.staging)
            self._copy(k, slot)
        self._current = slot
        self._point(self.layers[k], self.staging[slot])
        self._prefetch((k + 1) % len(self.layers), 1 - slot)

    def _after(self, k: int) -> None:
        if self.cuda:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(self.device))
            self._free[self._current] = event

    def _prefetch(self, k: int, slot: int) -> None:
        """Copies layer k into `slot` on the side stream, once the slot's last reader is done (the
        layer before the running one: its `_after` has recorded that)."""
        if not self.cuda or len(self.staging) < 2 or k in self._prefetched:
            return
        with torch.cuda.stream(self._stream):
            free = self._free[slot]
            if free is not None:
                self._stream.wait_event(free)
            self._copy(k, slot)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._prefetched[k] = (slot, ready)

    @staticmethod
    def _point(layer: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            owner_name, _, attr = name.rpartition(".")
            owner = layer.get_submodule(owner_name) if owner_name else layer
            if attr in owner._parameters:
                owner._parameters[attr].data = t
            else:
                owner._buffers[attr] = t


def _named_tensors(layer: nn.Module):
    yield from layer.named_parameters()
    yield from layer.named_buffers()
