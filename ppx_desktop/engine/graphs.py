"""Graph backends for the captured frame (framestep.py): real CUDA graphs, and an eager stand-in.

`CudaGraphs` captures every variant of the frame (one per KV part read) into ONE memory pool.
Sharing is safe here because the graphs never run concurrently (one stream, one frame at a
time) and each replay's static output is copied to the host before any other graph replays:
a later capture may reuse blocks an earlier one freed, which only ever holds that graph's
temporaries or its own output. Four private pools would each keep the largest temporaries.

`EagerGraphs` runs the same capture procedure without CUDA: two warm-up frames, then the
"captured" frame inside a memory-tracker pool region, and a replay that reruns the frame
eagerly and writes the static output. It lets the CPU test suite exercise the capture,
restore and fallback logic, and the meta device measure the released model's peak memory with
graph pools counted (memtrack.py).
"""

from __future__ import annotations

import itertools
import typing as tp

import torch

Frame = tp.Callable[[], torch.Tensor]

_ids = itertools.count()


class CudaGraphs:
    """Captures frames as CUDA graphs in one shared memory pool (CUDA only)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = torch.cuda.graph_pool_handle()
        self._stream = torch.cuda.Stream(device)
        self._graphs: list[torch.cuda.CUDAGraph] = []

    def capture(self, frame: Frame) -> tuple[tp.Callable[[], None], torch.Tensor]:
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up off the graph: lazy inits, cuBLAS workspaces
                frame()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = frame()
        self._graphs.append(graph)
        return graph.replay, out

    def release(self) -> None:
        self._graphs.clear()  # the pool's memory returns once no graph uses it
        self.pool = torch.cuda.graph_pool_handle()


class EagerGraphs:
    """The capture procedure of `CudaGraphs` run eagerly, on any device.

    Args:
        tracker: a `memtrack.LiveBytes` (optional) that counts the pool as CUDA would.
        fail: raise this exception at the next capture (tests of the fallback path).
    """

    def __init__(self, tracker=None, fail: Exception | None = None):
        self.tracker = tracker
        self.fail = fail
        self.name = f"frame-graphs-{next(_ids)}"
        self.captures = 0

    def _pool(self):
        import contextlib

        return self.tracker.pool(self.name) if self.tracker is not None else contextlib.nullcontext()

    def capture(self, frame: Frame) -> tuple[tp.Callable[[], None], torch.Tensor]:
        for _ in range(2):
            frame()
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        with self._pool():
            out = frame()
        self.captures += 1

        def replay() -> None:
            with self._pool():
                out.copy_(frame())

        return replay, out

    def release(self) -> None:
        if self.tracker is not None:
            self.tracker.release_pool(self.name)
        self.name = f"frame-graphs-{next(_ids)}"
