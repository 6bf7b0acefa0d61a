"""Model configuration: plain dataclasses whose defaults are the released PersonaPlex-7B-v1.

A model directory has the layout of the Hugging Face repo ``nvidia/personaplex-7b-v1``. It may
also hold ``ppx_config.json`` describing a non-standard architecture (our tiny test models)::

    {"format": 1,
     "mimi": {"seanet": {...}, "quantizer": {...}, "transformer": {...}, "num_codebooks": 8},
     "lm": {...},
     "prompt": {"silence_tokens": [8 ints], "sine_tokens": [8 ints]}}

The inner objects use the reference loader's keyword names (``_seanet_kwargs``,
``_quantizer_kwargs``, ``_transformer_kwargs``, ``_lm_kwargs``) so a config can be compared
with the reference side by side. A missing file or key means the released model's value.
"""

from __future__ import annotations

import dataclasses
import json
import typing as tp
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_RATE = 24_000
FRAME_RATE = 12.5
FRAME_SIZE = 1920  # samples per 80 ms frame
CONFIG_FORMAT = 1
MIN_CONTEXT = 250  # 20 s: the shortest temporal context offered as a memory knob

# File names of the official model directory.
LM_WEIGHTS = "model.safetensors"
MIMI_WEIGHTS = "tokenizer-e351c8d8-checkpoint125.safetensors"
TEXT_TOKENIZER = "tokenizer_spm_32k_3.model"
VOICES_ARCHIVE = "voices.tgz"
VOICES_DIR = "voices"
PPX_CONFIG = "ppx_config.json"


class ConfigError(ValueError):
    """A model configuration is malformed; the message names the offending key."""


@dataclass(frozen=True)
class SeanetConfig:
    channels: int = 1
    dimension: int = 512
    causal: bool = True
    n_filters: int = 64
    n_residual_layers: int = 1
    activation: str = "ELU"
    compress: int = 2
    dilation_base: int = 2
    disable_norm_outer_blocks: int = 0
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 3
    norm: str = "none"
    pad_mode: str = "constant"
    ratios: tuple[int, ...] = (8, 6, 5, 4)
    true_skip: bool = True

    # What our engine implements; anything else is refused rather than silently misread.
    _fixed: tp.ClassVar[dict] = {
        "channels": 1, "causal": True, "activation": "ELU", "norm": "none",
        "pad_mode": "constant", "true_skip": True,
    }

    @property
    def hop_length(self) -> int:
        hop = 1
        for r in self.ratios:
            hop *= r
        return hop


@dataclass(frozen=True)
class QuantizerConfig:
    dimension: int = 256
    n_q: int = 32
    bins: int = 2048
    input_dimension: int = 512
    output_dimension: int = 512
    _fixed: tp.ClassVar[dict] = {}


@dataclass(frozen=True)
class MimiTransformerConfig:
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 8
    causal: bool = True
    layer_scale: float = 0.01
    context: int = 250
    conv_layout: bool = True
    max_period: float = 10_000
    gating: str = "none"
    norm: str = "layer_norm"
    positional_embedding: str = "rope"
    dim_feedforward: int = 2048
    input_dimension: int = 512
    output_dimensions: tuple[int, ...] = (512,)
    _fixed: tp.ClassVar[dict] = {
        "causal": True, "conv_layout": True, "gating": "none", "norm": "layer_norm",
        "positional_embedding": "rope",
    }


@dataclass(frozen=True)
class MimiConfig:
    seanet: SeanetConfig = field(default_factory=SeanetConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    transformer: MimiTransformerConfig = field(default_factory=MimiTransformerConfig)
    num_codebooks: int = 8

    @property
    def encoder_frame_rate(self) -> float:
        return SAMPLE_RATE / self.seanet.hop_length

    @property
    def resample_stride(self) -> int:
        """Stride of the learnt 25 Hz <-> 12.5 Hz resampling convolutions."""
        return int(self.encoder_frame_rate / FRAME_RATE)

    def validate(self, source: str = "config", prefix: str = "") -> None:
        """Checks that the codec's parts fit together; `prefix` names where its keys live."""
        sea, q, tr = self.seanet, self.quantizer, self.transformer
        if SAMPLE_RATE % sea.hop_length or (SAMPLE_RATE / sea.hop_length) % FRAME_RATE:
            raise ConfigError(f"{source}: '{prefix}seanet.ratios' {list(sea.ratios)} do not give a whole "
                              f"multiple of {FRAME_RATE} Hz")
        if FRAME_SIZE % sea.hop_length:
            raise ConfigError(f"{source}: '{prefix}seanet.ratios' hop {sea.hop_length} does not divide {FRAME_SIZE}")
        if tr.d_model != sea.dimension or tr.input_dimension != sea.dimension or list(tr.output_dimensions) != [
            sea.dimension
        ]:
            raise ConfigError(f"{source}: '{prefix}transformer' d_model/input_dimension/output_dimensions must "
                              f"equal '{prefix}seanet.dimension' ({sea.dimension})")
        if tr.d_model % tr.num_heads or (tr.d_model // tr.num_heads) % 2:
            raise ConfigError(f"{source}: '{prefix}transformer.num_heads' must split d_model into even head sizes")
        if q.input_dimension != sea.dimension or q.output_dimension != sea.dimension:
            raise ConfigError(f"{source}: '{prefix}quantizer' input/output_dimension must equal "
                              f"'{prefix}seanet.dimension' ({sea.dimension})")
        if not 1 <= self.num_codebooks <= q.n_q:
            raise ConfigError(f"{source}: '{prefix}num_codebooks' must be between 1 and n_q ({q.n_q})")


@dataclass(frozen=True)
class LMConfig:
    dim: int = 4096
    text_card: int = 32000
    existing_text_padding_id: int = 3
    n_q: int = 16
    dep_q: int = 16
    card: int = 2048
    num_heads: int = 32
    num_layers: int = 32
    hidden_scale: float = 4.125
    causal: bool = True
    layer_scale: float | None = None
    context: int = 3000
    max_period: float = 10_000
    gating: str = "silu"
    norm: str = "rms_norm_f32"
    positional_embedding: str = "rope"
    depformer_dim: int = 1024
    depformer_dim_feedforward: int = 4224
    depformer_num_heads: int = 16
    depformer_num_layers: int = 6
    depformer_causal: bool = True
    depformer_layer_scale: float | None = None
    depformer_multi_linear: bool = True
    # The reference lists 8 here and then ignores it: the depformer gets no context limit and a
    # 16-slot cache (one per sub-step). Kept so reference configs parse.
    depformer_context: int | None = 8
    depformer_max_period: float = 10_000
    depformer_gating: str = "silu"
    depformer_pos_emb: str = "none"
    depformer_weights_per_step: bool = True
    delays: tuple[int, ...] = (0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1)
    _fixed: tp.ClassVar[dict] = {
        "causal": True, "layer_scale": None, "gating": "silu", "norm": "rms_norm_f32",
        "positional_embedding": "rope", "depformer_causal": True, "depformer_layer_scale": None,
        "depformer_multi_linear": True, "depformer_gating": "silu", "depformer_pos_emb": "none",
        "depformer_weights_per_step": True, "existing_text_padding_id": 3,
    }

    @property
    def num_streams(self) -> int:
        return self.n_q + 1

    @property
    def audio_per_stream(self) -> int:
        """Codebooks per audio stream (agent, user)."""
        return self.n_q // 2

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def hidden_dim(self) -> int:
        return gated_hidden(self.dim, int(self.hidden_scale * self.dim))

    @property
    def depformer_hidden_dim(self) -> int:
        return gated_hidden(self.depformer_dim, self.depformer_dim_feedforward)

    @property
    def text_out_card(self) -> int:
        # With an existing padding id the text head has exactly text_card outputs; the embedding
        # has one more row for the initial token (= text_card).
        return self.text_card


def gated_hidden(dim: int, dim_feedforward: int) -> int:
    """Hidden width of the SiLU-gated FFN, by the reference's rule."""
    if dim_feedforward == 4 * dim:
        return 21 * dim // 8
    return 2 * dim_feedforward // 3


@dataclass(frozen=True)
class PromptConfig:
    # Mimi codes of a silent frame and of a 440 Hz tone frame, for the released codec.
    silence_tokens: tuple[int, ...] = (948, 243, 1178, 546, 1736, 1030, 1978, 2008)
    sine_tokens: tuple[int, ...] = (430, 1268, 381, 1611, 1095, 1495, 56, 472)
    _fixed: tp.ClassVar[dict] = {}


@dataclass(frozen=True)
class ModelConfig:
    mimi: MimiConfig = field(default_factory=MimiConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def with_context(self, context: int | None, source: str = "--context") -> ModelConfig:
        """This configuration with a shorter temporal context (a memory knob: the KV cache holds
        `context` frames). Longer than the model's own window is refused: it was never trained so."""
        if context is None or context == self.lm.context:
            return self
        shortest = min(MIN_CONTEXT, self.lm.context)
        if not isinstance(context, int) or isinstance(context, bool) or not shortest <= context <= self.lm.context:
            raise ConfigError(f"{source}: the context must be between {shortest} and this model's "
                              f"{self.lm.context} frames ({self.lm.context / FRAME_RATE / 60:.1f} minutes), got "
                              f"{context!r}")
        return dataclasses.replace(self, lm=dataclasses.replace(self.lm, context=context))

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> ModelConfig:
        _require_mapping(data, source)
        known = {"format", "mimi", "lm", "prompt"}
        _reject_unknown(data, known, source)
        fmt = data.get("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise ConfigError(f"{source}: 'format' is {fmt!r}; this version reads format {CONFIG_FORMAT}")
        mimi_data = data.get("mimi", {})
        _require_mapping(mimi_data, f"{source}: 'mimi'")
        _reject_unknown(mimi_data, {"seanet", "quantizer", "transformer", "num_codebooks"}, f"{source}: 'mimi'")
        mimi = MimiConfig(
            seanet=_build(SeanetConfig, mimi_data.get("seanet", {}), f"{source}: 'mimi.seanet'"),
            quantizer=_build(QuantizerConfig, mimi_data.get("quantizer", {}), f"{source}: 'mimi.quantizer'"),
            transformer=_build(
                MimiTransformerConfig, mimi_data.get("transformer", {}), f"{source}: 'mimi.transformer'"
            ),
            num_codebooks=_check_type(
                "num_codebooks", mimi_data.get("num_codebooks", 8), int, f"{source}: 'mimi'"
            ),
        )
        lm = _build(LMConfig, data.get("lm", {}), f"{source}: 'lm'")
        prompt = _build(PromptConfig, data.get("prompt", {}), f"{source}: 'prompt'")
        config = cls(mimi=mimi, lm=lm, prompt=prompt)
        config.validate(source)
        return config

    def to_dict(self) -> dict:
        def plain(obj) -> dict:
            return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}

        return {
            "format": CONFIG_FORMAT,
            "mimi": {
                "seanet": plain(self.mimi.seanet),
                "quantizer": plain(self.mimi.quantizer),
                "transformer": plain(self.mimi.transformer),
                "num_codebooks": self.mimi.num_codebooks,
            },
            "lm": plain(self.lm),
            "prompt": plain(self.prompt),
        }

    def validate(self, source: str = "config") -> None:
        """Cross-field checks; raises ConfigError naming the key."""
        self.mimi.validate(source, prefix="mimi.")
        q, lm = self.mimi.quantizer, self.lm
        if lm.n_q != 2 * self.mimi.num_codebooks:
            raise ConfigError(f"{source}: 'lm.n_q' ({lm.n_q}) must be twice 'mimi.num_codebooks' "
                              f"({self.mimi.num_codebooks}): agent and user streams")
        if lm.dep_q != lm.n_q:
            raise ConfigError(f"{source}: 'lm.dep_q' ({lm.dep_q}) must equal 'lm.n_q' ({lm.n_q}) for PersonaPlex")
        if lm.card != q.bins:
            raise ConfigError(f"{source}: 'lm.card' ({lm.card}) must equal 'mimi.quantizer.bins' ({q.bins})")
        if len(lm.delays) != lm.num_streams or any(d not in (0, 1) for d in lm.delays):
            raise ConfigError(f"{source}: 'lm.delays' must hold {lm.num_streams} entries of 0 or 1")
        if lm.dim % lm.num_heads or (lm.dim // lm.num_heads) % 2:
            raise ConfigError(f"{source}: 'lm.num_heads' must split 'lm.dim' into even head sizes")
        if lm.depformer_dim % lm.depformer_num_heads:
            raise ConfigError(f"{source}: 'lm.depformer_num_heads' must divide 'lm.depformer_dim'")
        if lm.context < 2:
            raise ConfigError(f"{source}: 'lm.context' must be at least 2")
        if lm.text_card <= 3:
            raise ConfigError(f"{source}: 'lm.text_card' must be above 3 (ids 0..3 are special)")
        for name in ("silence_tokens", "sine_tokens"):
            toks = getattr(self.prompt, name)
            if len(toks) != self.mimi.num_codebooks or any(not 0 <= t < lm.card for t in toks):
                raise ConfigError(f"{source}: 'prompt.{name}' must hold {self.mimi.num_codebooks} codes "
                                  f"in [0, {lm.card})")


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """The configuration of a model directory: ``ppx_config.json`` if present, else the release."""
    path = Path(model_dir) / PPX_CONFIG
    if not path.exists():
        return ModelConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not readable as JSON ({exc})") from exc
    return ModelConfig.from_dict(data, source=str(path))


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def _require_mapping(data, where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")


def _reject_unknown(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known keys: {', '.join(sorted(known))}")


# Upper bounds far above any real model (the released one is well inside): larger values are
# typing errors or hostile files, and would overflow tensor sizes before any memory check.
_LIMITS = {
    "dim": 32768, "num_heads": 1024, "num_layers": 1024, "context": 1_000_000, "text_card": 1_000_000,
    "card": 1 << 20, "n_q": 64, "dep_q": 64, "hidden_scale": 64, "depformer_dim": 32768,
    "depformer_dim_feedforward": 1 << 20, "depformer_num_heads": 1024, "depformer_num_layers": 1024,
    "depformer_context": 1_000_000, "max_period": 1e12, "depformer_max_period": 1e12, "dimension": 32768,
    "n_filters": 4096, "n_residual_layers": 64, "compress": 64, "dilation_base": 64, "kernel_size": 1024,
    "residual_kernel_size": 1024, "last_kernel_size": 1024, "bins": 1 << 20, "input_dimension": 32768,
    "output_dimension": 32768, "d_model": 32768, "dim_feedforward": 1 << 20, "num_codebooks": 64,
    "layer_scale": 1e6, "existing_text_padding_id": 1 << 20, "disable_norm_outer_blocks": 64,
}


def _check_type(key: str, value, kind, where: str):
    """Checks one JSON value against the annotated type; returns it converted (lists to tuples)."""
    ok_types = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}
    if kind in ok_types:
        if isinstance(value, bool) and kind is not bool:
            raise ConfigError(f"{where}: key {key!r} must be {kind.__name__}, got {value!r}")
        if not isinstance(value, ok_types[kind]):
            raise ConfigError(f"{where}: key {key!r} must be {kind.__name__}, got {value!r}")
        if kind in (int, float) and value <= 0 and key not in ("disable_norm_outer_blocks", "existing_text_padding_id"):
            raise ConfigError(f"{where}: key {key!r} must be positive, got {value!r}")
        if kind in (int, float) and key in _LIMITS and value > _LIMITS[key]:
            raise ConfigError(f"{where}: key {key!r} = {value!r} is beyond any model this app can run "
                              f"(at most {_LIMITS[key]:g}); is the file damaged?")
        return value
    raise TypeError(kind)


def _build(cls, data, where: str):
    _require_mapping(data, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(data, set(fields), where)
    hints = tp.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        hint = hints[key]
        origin = tp.get_origin(hint)
        args = tp.get_args(hint)
        if origin is tuple:
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{where}: key {key!r} must be a list of integers, got {value!r}")
            if len(value) > 64 or any(not -(1 << 20) <= v <= 1 << 20 for v in value):
                raise ConfigError(f"{where}: key {key!r} holds values beyond any model this app can run")
            values[key] = tuple(value)
        elif type(None) in args:  # Optional[...]
            if value is None:
                values[key] = None
            else:
                inner = next(a for a in args if a is not type(None))
                values[key] = _check_type(key, value, inner, where)
        else:
            values[key] = _check_type(key, value, hint, where)
        fixed = cls._fixed
        if key in fixed and values[key] != fixed[key]:
            raise ConfigError(f"{where}: key {key!r} = {value!r} is not supported (only {fixed[key]!r})")
    return cls(**values)
