"""The speech-to-text model `kyutai/stt-1b-en_fr` from the Hub, through the same verified,
resumable download as PersonaPlex (hub.py), and finding it again.

The repository holds the reference loader's `config.json`, the weights, the text tokenizer and
the Mimi codec (the same codec weights as PersonaPlex's, under another name). Its weights are
CC-BY 4.0 and the repository is not gated, so no token is needed.
"""

from __future__ import annotations

import typing as tp
from pathlib import Path

from ..engine.stt_config import STT_CONFIG, STT_REPO, load_stt_config, released_stt_config
from .hub import DownloadResult, NotFoundError, RepoFiles, download_model, find_model_dir


def stt_files() -> RepoFiles:
    """The released repository's files, as its config.json names them."""
    config = released_stt_config()
    return RepoFiles((STT_CONFIG, *config.files))


def download_stt(repo: str = STT_REPO, **kwargs: tp.Any) -> DownloadResult:
    """Downloads and verifies the speech-to-text repository (keyword arguments: `download_model`'s),
    then checks that its config.json names only files that came with it."""
    result = download_model(repo, files=stt_files(), **kwargs)
    config = load_stt_config(result.model_dir)
    missing = [name for name in config.files if not (result.model_dir / name).is_file()]
    if missing:
        raise NotFoundError(f"{repo}'s {STT_CONFIG} names {', '.join(missing)}, which the repository does not "
                            "have in the expected layout; this version cannot use it")
    return result


def find_stt_dir(repo: str = STT_REPO) -> Path | None:
    """The folder of a complete, verified download of the speech-to-text model (no network)."""
    return find_model_dir(repo, files=stt_files())


def transcription_status(model_dir: Path | None = None) -> list[str]:
    """`status` lines about the optional speech-to-text model: where it is (DIR/stt beside a model
    directory, else the download), its files, and the GPU memory it adds; or how to get it."""
    import torch

    from ..engine.config import ConfigError
    from ..engine.stt import stt_cache_bytes, stt_weight_bytes

    stt_dir = model_dir / "stt" if model_dir is not None and (model_dir / "stt" / STT_CONFIG).is_file() else None
    stt_dir = stt_dir or find_stt_dir()
    if stt_dir is None:
        config = released_stt_config()
        need = stt_weight_bytes(config, torch.bfloat16) + stt_cache_bytes(config, torch.bfloat16)
        return [f"transcription (optional): {STT_REPO} is not downloaded; `ppx-desktop download "
                f"--with-transcription` adds it (about {need / 1e9:.1f} GB more GPU memory in bfloat16)"]
    try:
        config = load_stt_config(stt_dir)
    except ConfigError as exc:
        return [f"transcription: {stt_dir} cannot be used: {exc}"]
    lines = [f"transcription: {stt_dir}"]
    missing = [name for name in config.files if not (stt_dir / name).is_file()]
    for name in config.files:
        if name not in missing:
            lines.append(f"  {name}: {(stt_dir / name).stat().st_size / 1e9:.2f} GB")
    if missing:
        lines.append(f"  missing: {'; '.join(missing)} - run `ppx-desktop download --with-transcription`")
    weights, cache = stt_weight_bytes(config, torch.bfloat16), stt_cache_bytes(config, torch.bfloat16)
    lines.append(f"  GPU memory it adds in bfloat16: about {(weights + cache) / 1e9:.2f} GB (weights "
                 f"{weights / 1e9:.2f} GB, {config.lm.context}-frame attention cache {cache / 1e9:.2f} GB)")
    return lines
