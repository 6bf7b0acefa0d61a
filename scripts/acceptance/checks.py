"""The ten checks, in the order they run and are reported."""

from __future__ import annotations

from .capture import check_capture, check_graph_vs_eager, check_sampling
from .codec import check_codec
from .environment import check_environment, check_gpu_tier
from .live import check_worker
from .memory import check_memory
from .offload import check_offload
from .report import Check
from .speed import check_speed

CHECKS = [
    Check(1, "environment", "CUDA visible (driver, capability, free memory read); int8 and int4 weight-only kernels "
          "run and match (int4 refused below sm80); Triton noted", check_environment),
    Check(2, "tests/gpu tier", "every test marked cuda passes, greedy and sampled frames in captured graphs included",
          check_gpu_tier),
    Check(3, "capture (bf16)", "every graph of the released frame captured, then 200 replays under sync debug mode "
          "'error' without a sync or an error", check_capture),
    Check(4, "graph vs eager", "across the first KV boundary and the context wrap: identical greedy tokens, audio "
          "within 1e-3", check_graph_vs_eager),
    Check(5, "sampling in the graph", "replays draw new tokens frame to frame; torch.manual_seed reproduces 50 "
          "frames exactly", check_sampling),
    Check(6, "speed", "200 frames per precision (bf16, int8, int4): median and p95 (p95 < 80 ms), GB/s against the "
          "traced bytes per frame, the attention kernel; int8 faster than bf16, int4 than int8", check_speed),
    Check(7, "memory", "peak reserved over load, warm-up, 20 frames, a second conversation and a custom voice within "
          "the plan; capped at 24/12/8 GiB for bf16/int8/int4: no out-of-memory", check_memory),
    Check(8, "layer offload", "int8 with layers in host memory gives the tokens of none; copies overlap compute",
          check_offload),
    Check(9, "worker end to end", "300 live frames fed in real time from a WAV, a voice switch, a second "
          "conversation: no error events, no dropped frames, p95 frame time < 80 ms", check_worker),
    Check(10, "Mimi on the GPU", "the GPU's codes equal the CPU's for the same audio (TF32 disabled if needed, and "
          "said)", check_codec),
]
