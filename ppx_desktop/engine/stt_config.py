"""Configuration of a Kyutai speech-to-text model directory (`kyutai/stt-1b-en_fr` and its kind).

Such a directory holds the repository's own files: `config.json` (the reference loader's format:
the language model's keyword arguments plus file names and `stt_config`), the weights it names
(`moshi_name`, default `model.safetensors`), the Mimi codec weights (`mimi_name`), the text
tokenizer (`tokenizer_name`) and, for a non-standard codec such as our tiny test models, a JSON
file in the reference's Mimi format named by `mimi_config_name`.

We read the file as the reference loader does: a key that is missing takes the reference's
default, keys that only concern other model kinds are ignored (and listed in `ignored_keys`),
and a value our engine does not implement is refused with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

from .config import (
    FRAME_RATE,
    SAMPLE_RATE,
    ConfigError,
    MimiConfig,
    MimiTransformerConfig,
    QuantizerConfig,
    SeanetConfig,
    _build,
    _require_mapping,
    gated_hidden,
)

STT_REPO = "kyutai/stt-1b-en_fr"
STT_CONFIG = "config.json"
# The reference loader's defaults for the file names (models/loaders.py).
DEFAULT_WEIGHTS = "model.safetensors"
DEFAULT_MIMI = "tokenizer-e351c8d8-checkpoint125.safetensors"
DEFAULT_TOKENIZER = "tokenizer_spm_32k_3.model"


@dataclass(frozen=True)
class STTLMConfig:
    """The speech-to-text language model: a Moshi temporal transformer with no depformer.

    Defaults are the reference `LMModel`'s keyword defaults, so a config file that omits a key
    means what it means to the reference. Streams: 0 text, 1..n_q audio codebooks.
    """

    dim: int = 128
    text_card: int = 32000
    existing_text_padding_id: int = 3
    existing_text_end_padding_id: int = 0
    n_q: int = 8
    card: int = 1024
    num_heads: int = 8
    num_layers: int = 8
    hidden_scale: float = 4
    context: int | None = None
    max_period: float = 10_000
    delays: tuple[int, ...] = (0,)
    extra_heads_num_heads: int = 0
    extra_heads_dim: int = 6
    # The parts of the architecture we implement; other values are refused (see `_FIXED`).
    norm: str = "layer_norm"
    gating: str = "none"
    positional_embedding: str = "sin"
    _fixed: tp.ClassVar[dict] = {}

    @property
    def num_streams(self) -> int:
        return self.n_q + 1

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def hidden_dim(self) -> int:
        return gated_hidden(self.dim, int(self.hidden_scale * self.dim))


# Keys whose value must be this for our engine (the reference's default when the key is missing).
_FIXED = {
    "dep_q": (0, 8), "norm": ("rms_norm_f32", "layer_norm"), "gating": ("silu", "none"),
    "positional_embedding": ("rope", "sin"), "causal": (True, True), "layer_scale": (None, None),
    "norm_emb": (False, False), "bias_proj": (False, False), "kv_repeat": (1, 1),
    "demux_second_text_stream": (False, False), "demux_second_stream": (False, False),
    "text_card_out": (None, None), "cross_attention": (False, False), "lora": (False, False),
    "fuser": (None, None), "quantize": (False, False),
}
# Keys that may be zero (the config parser otherwise wants positive numbers).
_NON_NEGATIVE = ("existing_text_end_padding_id", "extra_heads_num_heads")


@dataclass(frozen=True)
class STTConfig:
    """A speech-to-text directory's configuration: the model, its codec, file names, how to run it.

    Attributes:
        audio_delay_seconds: how far the text lags the audio; a file's transcription feeds this much
            silence after the audio so the last words come out (`stt_config`).
        audio_silence_prefix_seconds: silence fed before the audio (`stt_config`).
        text_padding_token_id: ids up to this one are not text (the transcription script's rule).
        temp_text, top_k_text: the repository's sampling settings (`lm_gen_config`); 0 = greedy.
        ignored_keys: config keys read by the reference for other model kinds, unused here.
        unused_weights: checkpoint tensors the reference builds but a model without depformer never
            uses (a single `depformer_in` projection when `depformer_multi_linear` is false, and the
            conditioners' tensors when nothing fuses them).
    """

    lm: STTLMConfig = field(default_factory=STTLMConfig)
    mimi: MimiConfig = field(default_factory=MimiConfig)
    weights_name: str = DEFAULT_WEIGHTS
    mimi_name: str = DEFAULT_MIMI
    tokenizer_name: str = DEFAULT_TOKENIZER
    mimi_config_name: str | None = None
    model_type: str = "moshi"
    audio_delay_seconds: float = 5.0
    audio_silence_prefix_seconds: float = 1.0
    text_padding_token_id: int = 3
    temp_text: float = 0.7
    top_k_text: int = 25
    ignored_keys: tuple[str, ...] = ()
    unused_weights: tuple[str, ...] = ()
    unused_weight_prefixes: tuple[str, ...] = ()

    @property
    def files(self) -> list[str]:
        """The files the directory must hold besides config.json."""
        names = [self.weights_name, self.mimi_name, self.tokenizer_name]
        return names + ([self.mimi_config_name] if self.mimi_config_name else [])

    @property
    def prefix_frames(self) -> int:
        """Silent frames fed before a file's audio (the transcription script rounds up)."""
        return math.ceil(self.audio_silence_prefix_seconds * FRAME_RATE)

    @property
    def flush_frames(self) -> int:
        """Silent frames fed after a file's audio, so the delayed text of its end comes out."""
        return math.ceil(self.audio_delay_seconds * FRAME_RATE)

    @classmethod
    def from_dict(cls, data: dict, source: str = STT_CONFIG, mimi: MimiConfig | None = None) -> STTConfig:
        """Parses the reference-format `config.json`; `mimi` is the codec named by `mimi_config_name`
        (the released codec when None), its codebook count set to what the model reads."""
        _require_mapping(data, source)
        raw = dict(data)
        names = {"moshi_name": DEFAULT_WEIGHTS, "mimi_name": DEFAULT_MIMI, "tokenizer_name": DEFAULT_TOKENIZER}
        files = {k: _string(raw.pop(k, default), k, source) for k, default in names.items()}
        mimi_config_name = raw.pop("mimi_config_name", None)
        if mimi_config_name is not None:
            mimi_config_name = _string(mimi_config_name, "mimi_config_name", source)
        model_type = _string(raw.pop("model_type", "moshi"), "model_type", source)
        if model_type not in ("stt", "moshi"):
            raise ConfigError(f"{source}: 'model_type' is {model_type!r}: this is not a speech-to-text model")
        stt = raw.pop("stt_config", {}) or {}
        _require_mapping(stt, f"{source}: 'stt_config'")
        gen = raw.pop("lm_gen_config", {}) or {}
        _require_mapping(gen, f"{source}: 'lm_gen_config'")
        padding = raw.pop("text_padding_token_id", 3)
        fixed = {}
        for key, (wanted, default) in _FIXED.items():
            value = raw.pop(key, default)
            if value != wanted:
                raise ConfigError(f"{source}: {key!r} = {value!r} is not supported by this engine (only {wanted!r}); "
                                  "is this a speech-to-text model?")
            fixed[key] = value
        conditioners = raw.get("conditioners")
        multi_linear = raw.get("depformer_multi_linear", False)
        # Other keys concern parts this model kind does not have (the depformer's, the conditioners',
        # LoRA's, training's): the reference reads them and builds nothing that runs. Kept for the log.
        fields = {f.name for f in dataclasses.fields(STTLMConfig)}
        ignored = sorted(k for k in raw if k not in fields)
        for key in ignored:
            raw.pop(key)
        zero_ok = {k: _integer(raw.pop(k), k, source) for k in _NON_NEGATIVE if k in raw}
        if any(v < 0 for v in zero_ok.values()):
            raise ConfigError(f"{source}: {', '.join(zero_ok)} must not be negative")
        lm = _build(STTLMConfig, {**raw, **{k: fixed[k] for k in ("norm", "gating", "positional_embedding")}},
                    source)
        lm = dataclasses.replace(lm, **zero_ok)
        codec = mimi or MimiConfig()
        codec = dataclasses.replace(codec, num_codebooks=lm.n_q)
        config = cls(
            lm=lm, mimi=codec, weights_name=files["moshi_name"], mimi_name=files["mimi_name"],
            tokenizer_name=files["tokenizer_name"], mimi_config_name=mimi_config_name, model_type=model_type,
            audio_delay_seconds=_number(stt.get("audio_delay_seconds", 5.0), "stt_config.audio_delay_seconds", source),
            audio_silence_prefix_seconds=_number(stt.get("audio_silence_prefix_seconds", 1.0),
                                                 "stt_config.audio_silence_prefix_seconds", source),
            text_padding_token_id=_integer(padding, "text_padding_token_id", source),
            temp_text=_number(gen.get("temp_text", 0.7), "lm_gen_config.temp_text", source),
            top_k_text=_integer(gen.get("top_k_text", 25), "lm_gen_config.top_k_text", source),
            ignored_keys=tuple(ignored),
            unused_weights=() if multi_linear else ("depformer_in.0.weight",),
            unused_weight_prefixes=("condition_provider.",) if conditioners else (),
        )
        config.validate(source)
        return config

    def validate(self, source: str = STT_CONFIG) -> None:
        lm = self.lm
        if lm.context is None or lm.context < 1:
            raise ConfigError(f"{source}: 'context' must be set to a positive number of frames (the attention "
                              "window); this engine keeps a fixed-size cache")
        if len(lm.delays) != lm.num_streams or any(d < 0 for d in lm.delays):
            raise ConfigError(f"{source}: 'delays' must hold {lm.num_streams} non-negative entries (text + n_q)")
        if lm.dim % lm.num_heads or (lm.dim // lm.num_heads) % 2:
            raise ConfigError(f"{source}: 'num_heads' must split 'dim' into even head sizes")
        if lm.text_card <= max(3, self.text_padding_token_id):
            raise ConfigError(f"{source}: 'text_card' must be above the special ids 0..3")
        if self.mimi.quantizer.n_q < lm.n_q:
            raise ConfigError(f"{source}: the model reads {lm.n_q} codebooks but the codec has only "
                              f"{self.mimi.quantizer.n_q}")
        if lm.card != self.mimi.quantizer.bins:
            raise ConfigError(f"{source}: 'card' ({lm.card}) must equal the codec's codebook size "
                              f"({self.mimi.quantizer.bins})")
        if self.audio_delay_seconds < 0 or self.audio_silence_prefix_seconds < 0:
            raise ConfigError(f"{source}: 'stt_config' times must not be negative")
        self.mimi.validate(self.mimi_config_name or source)


def released_stt_config() -> STTConfig:
    """`kyutai/stt-1b-en_fr` as we understand it before its config.json is downloaded (for sizes and
    memory): 16 layers of width 2048, 750-frame context, 32 codebooks, 4 end-of-turn heads. The
    downloaded config.json is what loading uses."""
    lm = STTLMConfig(dim=2048, text_card=8000, n_q=32, card=2048, num_heads=16, num_layers=16, hidden_scale=4.125,
                     context=750, max_period=100_000, delays=(0,) * 33, extra_heads_num_heads=4,
                     norm="rms_norm_f32", gating="silu", positional_embedding="rope")
    return STTConfig(lm=lm, mimi=MimiConfig(num_codebooks=32), mimi_name="mimi-pytorch-e351c8d8@125.safetensors",
                     tokenizer_name="tokenizer_en_fr_audio_8000.model", model_type="stt", audio_delay_seconds=0.5,
                     audio_silence_prefix_seconds=0.0, temp_text=0.0, top_k_text=50)


def mimi_config_from_reference(data: dict, source: str) -> MimiConfig:
    """A codec description in the reference's own format (`sample_rate`, `channels`, `frame_rate`,
    `seanet`, `quantizer`, `transformer`, the loader's keyword names) as our MimiConfig."""
    _require_mapping(data, source)
    known = {"sample_rate", "channels", "frame_rate", "seanet", "quantizer", "transformer"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
                          f"{', '.join(sorted(known))}")
    for key, wanted in (("sample_rate", SAMPLE_RATE), ("channels", 1), ("frame_rate", FRAME_RATE)):
        if data.get(key, wanted) != wanted:
            raise ConfigError(f"{source}: {key!r} = {data[key]!r} is not supported (only {wanted!r})")
    for key in ("seanet", "quantizer", "transformer"):
        if key not in data:
            raise ConfigError(f"{source}: missing {key!r} (the codec's {key} keyword arguments)")
    return MimiConfig(
        seanet=_build(SeanetConfig, data["seanet"], f"{source}: 'seanet'"),
        quantizer=_build(QuantizerConfig, data["quantizer"], f"{source}: 'quantizer'"),
        transformer=_build(MimiTransformerConfig, data["transformer"], f"{source}: 'transformer'"),
    )


def mimi_config_to_reference(config: MimiConfig) -> dict:
    """The inverse of `mimi_config_from_reference` (for writing tiny models)."""
    def plain(obj) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(obj, f.name), tuple) else v
                for f in dataclasses.fields(obj)}

    return {"sample_rate": SAMPLE_RATE, "channels": 1, "frame_rate": FRAME_RATE, "seanet": plain(config.seanet),
            "quantizer": plain(config.quantizer), "transformer": plain(config.transformer)}


def load_stt_config(model_dir: str | Path) -> STTConfig:
    """Reads `DIR/config.json` and, if it names one, the codec's JSON beside it."""
    model_dir = Path(model_dir)
    path = model_dir / STT_CONFIG
    data = _read_json(path, what="the speech-to-text model's config.json")
    mimi = None
    name = data.get("mimi_config_name") if isinstance(data, dict) else None
    if isinstance(name, str):
        mimi_path = model_dir / name
        mimi = mimi_config_from_reference(_read_json(mimi_path, what=f"the codec description named by {path}"),
                                          str(mimi_path))
    return STTConfig.from_dict(data, source=str(path), mimi=mimi)


def _read_json(path: Path, what: str):
    if not path.is_file():
        raise ConfigError(f"{path} not found: {what}. Download the model again "
                          f"(`ppx-desktop download --with-transcription`) or point at its folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable as JSON ({exc})") from exc


def _string(value, key: str, source: str) -> str:
    parts = value.replace("\\", "/").split("/") if isinstance(value, str) else []
    if not value or not isinstance(value, str) or value.startswith(("/", "\\")) or ".." in parts \
            or value.startswith(("hf://", "file://")):
        raise ConfigError(f"{source}: {key!r} must name a file inside the model folder, got {value!r}")
    return value


def _number(value, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{source}: {key!r} must be a number, got {value!r}")
    return float(value)


def _integer(value, key: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: {key!r} must be an integer, got {value!r}")
    return value


__all__ = [
    "STTConfig", "STTLMConfig", "STT_CONFIG", "STT_REPO", "load_stt_config", "mimi_config_from_reference",
    "mimi_config_to_reference", "released_stt_config",
]
