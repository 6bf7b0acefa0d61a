"""Loading safetensors checkpoints into our modules, strictly and with clear errors.

The module is built on the meta device (no memory), the file's header is checked against the
module's keys and shapes before any tensor is read, then tensors are read one by one from the
memory-mapped file, cast, and assigned. The reference loads the LM non-strictly and silently
leaves missing weights uninitialised; we refuse instead, naming the keys.
"""

from __future__ import annotations

import json
import os
import struct
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

_DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(ValueError):
    """A weights file is missing, damaged, or does not fit the model; the message says which."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def read_header(path: str | Path) -> dict[str, TensorInfo]:
    """Reads and validates a safetensors header without touching the tensor data.

    Raises CheckpointError for a missing file, a file that is not safetensors, or one that is
    shorter than its header says (an interrupted download).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: file is empty or truncated ({size} bytes); download it again")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or n + 8 > size:
                raise CheckpointError(f"{path}: not a safetensors file or truncated header; download it again")
            raw = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header: {exc})") from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a safetensors file (bad header)")
    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, meta in raw.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = meta["dtype"], tuple(meta["shape"]), meta["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad header entry for {name!r}") from exc
        count = 1
        for d in shape:
            count *= d
        if dtype not in _DTYPE_SIZES or end - start != count * _DTYPE_SIZES[dtype]:
            raise CheckpointError(f"{path}: header entry {name!r} is inconsistent ({dtype}, {list(shape)})")
        data_end = max(data_end, end)
        infos[name] = TensorInfo(dtype, shape)
    if 8 + n + data_end > size:
        missing = 8 + n + data_end - size
        raise CheckpointError(
            f"{path}: file is truncated ({size} bytes, {missing} bytes missing); the download was probably "
            "interrupted: download it again"
        )
    return infos


# A plan maps every model key to (checkpoint key, transform). Transforms adapt older layouts.
Transform = tp.Callable[[torch.Tensor], torch.Tensor]
Plan = dict[str, tuple[str, Transform | None]]


def direct_plan(model_shapes: dict[str, tuple[int, ...]], file_infos: dict[str, TensorInfo]) -> Plan:
    return {k: (k, None) for k in model_shapes if k in file_infos}


def check_plan(path: Path, plan: Plan, model_shapes: dict[str, tuple[int, ...]],
               file_infos: dict[str, TensorInfo], allow_unused: tp.Collection[str] = ()) -> None:
    """Raises CheckpointError listing missing, unexpected and mis-shaped keys."""
    problems = []
    missing = sorted(k for k in model_shapes if k not in plan)
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_short_list(missing)}")
    used = {src for src, _ in plan.values()}
    extra = sorted(k for k in file_infos if k not in used and k not in allow_unused)
    if extra:
        problems.append(f"{len(extra)} unexpected key(s): {_short_list(extra)}")
    bad = []
    for key, (src, transform) in plan.items():
        shape = file_infos[src].shape
        if transform is None and shape != model_shapes[key]:
            bad.append(f"{key} has shape {list(shape)}, expected {list(model_shapes[key])}")
    if bad:
        problems.append(f"{len(bad)} key(s) with the wrong shape: {_short_list(bad)}")
    if problems:
        raise CheckpointError(f"{path} does not match the model configuration: " + "; ".join(problems)
                              + ". Is this the right file for this model, and is ppx_config.json right?")


def load_weights(module: nn.Module, path: str | Path, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, plan_fn: tp.Callable[..., Plan] = direct_plan,
                 convert: tp.Callable[[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
                 target: nn.Module | None = None, on_host: tp.Callable[[str], bool] | None = None,
                 allow_unused: tp.Callable[[str], bool] | None = None) -> None:
    """Loads `path` into `module` (typically built on the meta device), strictly.

    Every tensor is read from the memory-mapped file on its own, cast to `dtype` (floating point
    tensors; None keeps the module's dtypes), moved to `device` and assigned to the module, so
    peak host memory stays near one tensor.

    With `convert(key, tensor_on_device) -> {key: tensor}` (quantisation), each tensor is moved to
    the device in its file dtype and converted there, and the results are assigned to `target`
    (the converted module; `module` still describes the checkpoint's keys and shapes).

    Keys for which `on_host(key)` is true stay in host memory (layers streamed to the GPU, see
    offload.py), so the GPU never has to hold them.

    Checkpoint keys for which `allow_unused(key)` is true may stay unread (tensors the reference
    builds for parts that never run); any other key the module lacks is an error.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    infos = read_header(path)
    model_sd = module.state_dict(keep_vars=True)
    model_shapes = {k: tuple(v.shape) for k, v in model_sd.items()}
    plan = plan_fn(model_shapes, infos)
    unused = [k for k in infos if allow_unused(k)] if allow_unused is not None else ()
    check_plan(path, plan, model_shapes, infos, allow_unused=unused)
    check_dtypes(path, plan, model_sd, infos)
    device, host = torch.device(device), torch.device("cpu")
    loaded: dict[str, torch.Tensor] = {}
    try:
        order = conversion_order(model_shapes) if convert is not None else list(plan)
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in order:
                src, transform = plan[key]
                t = f.get_tensor(src)
                if transform is not None:
                    t = transform(t)
                    if tuple(t.shape) != model_shapes[key]:
                        raise CheckpointError(f"{path}: {src} cannot be adapted to {key} {list(model_shapes[key])}")
                where = host if on_host is not None and on_host(key) else device
                if convert is not None:
                    # Converted (quantised) on the compute device, whose kernels define the packing,
                    # then kept where it belongs.
                    t = _finite(path, src, t.to(device=device))
                    loaded.update({k: v.to(device=where) for k, v in convert(key, t).items()})
                    continue
                target_dtype = dtype if dtype is not None and t.is_floating_point() else model_sd[key].dtype
                loaded[key] = _finite(path, src, t.to(device=where, dtype=target_dtype))
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: damaged weights file ({exc}); download it again") from exc
    # Modules rebuild derived buffers (Mimi's codebook centroids) in load_state_dict post-hooks.
    (module if target is None else target).load_state_dict(loaded, strict=True, assign=True)


def conversion_order(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The order in which tensors are converted on their way to the device: largest first, so the
    largest conversion transients (quantising a 131 M-weight head) come while little is loaded and
    the load's peak stays near the final weights (memory.py counts it in this order)."""
    def numel(key: str) -> int:
        n = 1
        for d in shapes[key]:
            n *= d
        return n

    return sorted(shapes, key=numel, reverse=True)
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def check_dtypes(path: Path, plan: Plan, model_sd: dict[str, torch.Tensor], file_infos: dict[str, TensorInfo]) -> None:
    """Refuses integer or boolean tensors where the model holds floating-point weights: cast
    silently, they load as a model that only babbles."""
    bad = [f"{src} is {file_infos[src].dtype}" for key, (src, _) in plan.items()
           if model_sd[key].is_floating_point() and file_infos[src].dtype not in _FLOAT_DTYPES]
    if bad:
        raise CheckpointError(f"{path} stores weights as integers where the model needs floating-point values "
                              f"({_short_list(bad)}): the file is damaged or not a checkpoint of this model; "
                              "download it again")


def _finite(path: Path, name: str, t: torch.Tensor) -> torch.Tensor:
    """`t`, if it holds no NaN or infinity (checked on its device; meta tensors have no values)."""
    if t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{path}: {name} holds NaN or infinite values; the file is damaged: download it again")
    return t


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Writes a safetensors file atomically (temp file, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp))
    os.replace(tmp, path)


def _short_list(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# --- LM checkpoint patches ---------------------------------------------------------------------
# The reference loader adapts Moshi-style checkpoints whose depformer has 8 steps instead of 16:
# a depformer attention weight with half the expected rows is repeated, and missing per-step
# tensors of steps 8..15 are copied from steps 0..7. For the released PersonaPlex file these
# are no-ops; we keep them so the same files load, and error on anything still missing.
_STEP_GROUPS = ("gating", "linears", "depformer_in", "depformer_emb")


def lm_plan(model_shapes: dict[str, tuple[int, ...]], file_infos: dict[str, TensorInfo]) -> Plan:
    plan: Plan = {}
    for key, shape in model_shapes.items():
        if key in file_infos:
            fshape = file_infos[key].shape
            if ("depformer" in key and "self_attn" in key and fshape != shape
                    and len(fshape) == len(shape) and 2 * fshape[0] == shape[0] and fshape[1:] == shape[1:]):
                plan[key] = (key, lambda t: torch.cat([t, t], dim=0))
            else:
                plan[key] = (key, None)
            continue
        for old in range(8):
            new = old + 8
            for group in _STEP_GROUPS:
                needle = f"{group}.{new}."
                if needle in key:
                    src = key.replace(needle, f"{group}.{old}.")
                    if src in file_infos:
                        plan[key] = (src, None)
                        break
            if key in plan:
                break
    return plan
