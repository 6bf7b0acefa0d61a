"""`ppx-desktop bench --memory`: a whole session's measured peak against the memory planner.

On `--device meta` the released model runs without its memory (shapes only), so this answers on
any machine whether a 24, 12 or 8 GB card holds bfloat16, int8 or int4 (session/memoryflow.py).
"""

from __future__ import annotations


def measure_memory(args) -> dict:
    import torch

    from ..engine.model import resolve_device, resolve_dtype
    from ..engine.quant import check_quant
    from ..session.memoryflow import run_memory_flow
    from .bench import _config

    if args.model_dir is not None:
        raise ValueError("--memory builds the model with random weights: use --config (tiny, small or full)")
    if args.config == "layer":
        raise ValueError("--memory measures a whole session: use --config tiny, small or full")
    device = torch.device("meta") if args.device == "meta" else resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, torch.device("cuda") if device.type == "meta" else device)
    check_quant(args.quant, device)
    report = run_memory_flow(_config(args), device, dtype, args.quant, frames=args.steps)
    return {"config": args.config or "small", "quant": args.quant, "frames": args.steps, **report.to_dict()}


def print_memory(r: dict) -> None:
    print(f"model {r['config']} on {r['device']}, {r['precision']}, context {r['context']} frames, "
          f"{r['frames']} frames per conversation")
    for phase in r["phases"]:
        print(f"  {phase['phase']:50s} live {phase['live_gib']:7.2f} GiB   peak {phase['peak_gib']:7.2f} GiB")
    print(f"measured peak       {r['peak_gib']:.2f} GiB")
    print(f"planned             {r['planned_gib']:.2f} GiB ({r['planned_device_gib']:.2f} GiB of allocations + "
          f"{r['cuda_context_gib']:.1f} GiB CUDA context allowance)")
