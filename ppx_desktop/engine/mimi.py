"""Mimi neural audio codec: SEANet encoder/decoder, latent transformers, 25 <-> 12.5 Hz resampling, split RVQ.

Two ways to run it:

* whole clips, `encode` / `decode`, padded as the reference pads them;
* streaming, `encode_step` / `decode_step`, with an explicit state from `init_encoder_state` /
  `init_decoder_state`. The state is allocated once and updated in place; a step has fixed shapes,
  no host synchronisation and no Python branch on tensor values, so it can be compiled or captured
  in a CUDA graph.

The reference streams with growing, dynamically created buffers. Ours are fixed, and give the
same bits:

* a zero-padded causal conv starts with a zero carry of `k_eff - stride` samples, which is the
  padding the reference adds to its first chunk;
* the replicate-padded downsample swaps its carry for copies of the first input frame while the
  state's `first` flag is set;
* a transposed conv adds nothing to its head while `first` is set; afterwards it adds
  `partial - bias`, as the reference does (its carried tail already includes the bias).

`state_dict()` matches the official tokenizer checkpoint key for key. The one-entry
`nn.ModuleDict` levels (`conv.conv`, `vq.layers.i._codebook`, ...) exist only for that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import MimiConfig, MimiTransformerConfig, QuantizerConfig, SeanetConfig
from .transformer import Transformer, TransformerState


class CausalConv1d(nn.Module):
    """Conv1d whose output at step t only depends on inputs up to t.

    Args:
        pad_mode: left padding, "constant" (zeros, SEANet) or "replicate" (first frame, downsample).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True, pad_mode: str = "constant", device=None, dtype=None):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation, groups=groups,
                         bias=bias, device=device, dtype=dtype)
        self.conv = nn.ModuleDict({"conv": conv})  # checkpoint key `conv.conv.weight`
        self.in_channels, self.stride, self.pad_mode = in_channels, stride, pad_mode
        self.kernel = (kernel_size - 1) * dilation + 1
        self.padding = self.kernel - stride
        self.slot = 0  # index of this conv's buffer in its stack's streaming state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole sequence `[B, C, T]` -> `[B, C', ceil(T / stride)]`; right-pads so the last window is full."""
        length = x.shape[-1]
        n_frames = (length - self.kernel + self.padding) / self.stride + 1
        extra = (math.ceil(n_frames) - 1) * self.stride + self.kernel - self.padding - length
        return self.conv.conv(F.pad(x, (self.padding, extra), mode=self.pad_mode))

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.in_channels, self.padding, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, carry: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Streams `x` `[B, C, T]` (T a multiple of the stride); `carry` `[B, C, padding]` is updated in place."""
        if x.shape[-1] % self.stride:
            raise ValueError(f"streaming chunk of {x.shape[-1]} samples is not a multiple of stride {self.stride}")
        if self.padding == 0:
            return self.conv.conv(x)
        previous = carry
        if self.pad_mode == "replicate":
            previous = torch.where(first, x[..., :1].expand_as(carry), carry)
        full = torch.cat([previous, x], dim=-1)  # [B, C, padding + T]
        carry.copy_(full[..., full.shape[-1] - self.padding:])
        return self.conv.conv(full)  # [B, C', T / stride]


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d trimmed on the right (causal): `[B, C, T]` -> `[B, C', T * stride]`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        convtr = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride, groups=groups, bias=bias,
                                    device=device, dtype=dtype)
        self.convtr = nn.ModuleDict({"convtr": convtr})  # checkpoint key `convtr.convtr.weight`
        self.out_channels = out_channels
        self.overlap = kernel_size - stride  # output samples still waiting for the next input
        self.slot = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr.convtr(x)  # [B, C', (T - 1) * stride + kernel]
        return y[..., : y.shape[-1] - self.overlap]

    def init_state(self, batch_size: int, device=None, dtype=None) -> torch.Tensor:
        return torch.zeros(batch_size, self.out_channels, self.overlap, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, partial: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Streams `x`; `partial` `[B, C', overlap]` (the previous call's tail) is updated in place."""
        y = self.convtr.convtr(x)  # [B, C', (T - 1) * stride + kernel]
        bias = self.convtr.convtr.bias
        carried = partial if bias is None else partial - bias[:, None]  # the reference's order of operations
        y[..., : self.overlap] += torch.where(first, 0.0, carried)
        n = y.shape[-1] - self.overlap
        partial.copy_(y[..., n:])
        return y[..., :n]


class ResidualBlock(nn.Module):
    """`x + conv_1(ELU(conv_k(ELU(x))))` with a `dim // compress` bottleneck and an identity shortcut."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        hidden = dim // compress
        self.block = nn.Sequential(
            nn.ELU(), CausalConv1d(dim, hidden, kernel_size, dilation=dilation, **kw),
            nn.ELU(), CausalConv1d(hidden, dim, 1, **kw),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)

    def step(self, x: torch.Tensor, buffers: list[torch.Tensor], first: torch.Tensor) -> torch.Tensor:
        return x + _stream(self.block, x, buffers, first)


def _stream(layers: nn.Sequential, x: torch.Tensor, buffers: list[torch.Tensor], first: torch.Tensor):
    """Runs `layers` in streaming mode, each conv with its own buffer `buffers[conv.slot]`."""
    for layer in layers:
        if isinstance(layer, ResidualBlock):
            x = layer.step(x, buffers, first)
        elif isinstance(layer, (CausalConv1d, CausalConvTranspose1d)):
            x = layer.step(x, buffers[layer.slot], first)
        else:
            x = layer(x)
    return x


class Seanet(nn.Module):
    """A SEANet encoder or decoder: `model.<i>` layers, run whole or streamed (see `seanet_encoder`)."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.model = nn.Sequential(*layers)
        for slot, conv in enumerate(self._convs()):
            conv.slot = slot

    def _convs(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, (CausalConv1d, CausalConvTranspose1d))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def init_state(self, batch_size: int, device=None, dtype=None) -> list[torch.Tensor]:
        return [conv.init_state(batch_size, device, dtype) for conv in self._convs()]

    def step(self, x: torch.Tensor, buffers: list[torch.Tensor], first: torch.Tensor) -> torch.Tensor:
        return _stream(self.model, x, buffers, first)


def seanet_encoder(cfg: SeanetConfig, device=None, dtype=None) -> Seanet:
    """`[B, channels, T]` -> `[B, dimension, T / hop]`, downsampling by the ratios in reverse order."""
    kw = dict(device=device, dtype=dtype)
    nf, mult = cfg.n_filters, 1
    layers: list[nn.Module] = [CausalConv1d(cfg.channels, nf, cfg.kernel_size, **kw)]
    for ratio in reversed(cfg.ratios):
        layers += [ResidualBlock(mult * nf, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, **kw)
                   for j in range(cfg.n_residual_layers)]
        layers += [nn.ELU(), CausalConv1d(mult * nf, 2 * mult * nf, 2 * ratio, ratio, **kw)]
        mult *= 2
    layers += [nn.ELU(), CausalConv1d(mult * nf, cfg.dimension, cfg.last_kernel_size, **kw)]
    return Seanet(layers)


def seanet_decoder(cfg: SeanetConfig, device=None, dtype=None) -> Seanet:
    """`[B, dimension, T]` -> `[B, channels, T * hop]`; no output activation, no clipping."""
    kw = dict(device=device, dtype=dtype)
    nf, mult = cfg.n_filters, 2 ** len(cfg.ratios)
    layers: list[nn.Module] = [CausalConv1d(cfg.dimension, mult * nf, cfg.kernel_size, **kw)]
    for ratio in cfg.ratios:
        layers += [nn.ELU(), CausalConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, ratio, **kw)]
        layers += [ResidualBlock(mult * nf // 2, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, **kw)
                   for j in range(cfg.n_residual_layers)]
        mult //= 2
    layers += [nn.ELU(), CausalConv1d(nf, cfg.channels, cfg.last_kernel_size, **kw)]
    return Seanet(layers)


class MimiTransformer(nn.Module):
    """The latent transformer on `[B, C, T]` tensors (checkpoint prefix `<name>.transformer.`)."""

    def __init__(self, cfg: MimiTransformerConfig, device=None, dtype=None):
        super().__init__()
        self.context = cfg.context
        self.transformer = Transformer(cfg.d_model, cfg.num_heads, cfg.num_layers, flavour="mimi",
                                       ffn_dim=cfg.dim_feedforward, context=cfg.context,
                                       rope_max_period=cfg.max_period, device=device, dtype=dtype)

    def init_state(self, batch_size: int) -> TransformerState:
        return self.transformer.init_state(batch_size, capacity=self.context)

    def forward(self, x: torch.Tensor, state: TransformerState | None = None, exact_window: bool = False):
        y = self.transformer(x.transpose(1, 2), state, exact_window=exact_window)  # [B, T, C]
        return y.transpose(1, 2)


class Codebook(nn.Module):
    """One VQ level. The checkpoint stores running sums; the centroids are `embedding_sum / usage`.

    The centroids are cached in the non-persistent buffer `embedding`, refreshed after every
    `load_state_dict`; call `refresh()` after writing the buffers any other way.
    """

    def __init__(self, dim: int, bins: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        kw = dict(device=device, dtype=dtype)
        self.register_buffer("_initialized", torch.zeros(1, **kw))  # training-only flag, kept for the key set
        self.register_buffer("cluster_usage", torch.ones(bins, **kw))
        self.register_buffer("embedding_sum", torch.zeros(bins, dim, **kw))
        self.register_buffer("embedding", torch.zeros(bins, dim, **kw), persistent=False)
        if not self.embedding_sum.is_meta:  # on meta, math would import torch's Python meta kernels
            self.refresh()
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module.refresh())

    @torch.no_grad()
    def refresh(self) -> None:
        self.embedding = self.embedding_sum / self.cluster_usage.clamp(min=self.eps)[:, None]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest centroid of each row of `x` `[N, D]` -> `[N]` int64.

        `cdist` + `argmin` exactly as the reference: with more than 25 centroids cdist uses its
        matrix-product formula, whose last bits differ from a direct distance and can flip near-ties.
        """
        return torch.cdist(x[None], self.embedding[None], p=2)[0].argmin(dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embedding)  # [..., D]


class ResidualVQ(nn.Module):
    """Residual VQ with 1x1 conv projections in and out (`input_proj`, `output_proj`, no bias)."""

    def __init__(self, cfg: QuantizerConfig, n_q: int, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.input_proj = nn.Conv1d(cfg.input_dimension, cfg.dimension, 1, bias=False, **kw)
        self.output_proj = nn.Conv1d(cfg.dimension, cfg.output_dimension, 1, bias=False, **kw)
        levels = [nn.ModuleDict({"_codebook": Codebook(cfg.dimension, cfg.bins, **kw)}) for _ in range(n_q)]
        self.vq = nn.ModuleDict({"layers": nn.ModuleList(levels)})  # key `vq.layers.<i>._codebook.*`

    @property
    def codebooks(self) -> list[Codebook]:
        return [level._codebook for level in self.vq.layers]

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """`[B, C, F]` -> codes `[B, n_q]` of the first `n_q` levels, each quantising the previous residual."""
        residual = self.input_proj(x)  # [B, D, F]
        B, D, n = residual.shape
        codes = []
        for codebook in self.codebooks[:n_q]:
            level = codebook.encode(residual.transpose(1, 2).reshape(B * n, D))  # [B * F]
            residual = residual - codebook.decode(level).view(B, n, D).transpose(1, 2)
            codes.append(level.view(B, n))
        return torch.stack(codes, dim=1)  # [B, n_q, F]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, K, F]` (levels 0..K-1) -> `[B, C, F]`: the centroids summed in level order, projected."""
        quantized = None
        for codebook, level in zip(self.codebooks, codes.unbind(1), strict=False):  # K <= n_q levels
            vectors = codebook.decode(level).transpose(1, 2)  # [B, D, F]
            quantized = vectors if quantized is None else quantized + vectors
        return self.output_proj(quantized)


class SplitResidualVQ(nn.Module):
    """One semantic level (`rvq_first`) plus `n_q - 1` acoustic levels (`rvq_rest`), both fed the same latent."""

    def __init__(self, cfg: QuantizerConfig, num_codebooks: int, device=None, dtype=None):
        super().__init__()
        self.num_codebooks = num_codebooks  # levels used by `encode`; `decode` uses as many as it is given
        self.rvq_first = ResidualVQ(cfg, 1, device, dtype)
        self.rvq_rest = ResidualVQ(cfg, cfg.n_q - 1, device, dtype)

    def refresh(self) -> None:
        for codebook in self.rvq_first.codebooks + self.rvq_rest.codebooks:
            codebook.refresh()

    def encode(self, latent: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """`[B, C, F]` -> codes `[B, K, F]` int64 of the first K = `num_codebooks` levels (default: the
        configured count). Level k quantises what levels 0..k-1 left, so the first K codes of a longer
        encode are those of a K-level encode: one encode can serve models that need different counts."""
        n = self.num_codebooks if num_codebooks is None else num_codebooks
        if not 1 <= n <= 1 + len(self.rvq_rest.codebooks):
            raise ValueError(f"cannot encode {n} codebooks: this codec has {1 + len(self.rvq_rest.codebooks)}")
        if latent.shape[-1] == 0:
            return torch.empty(latent.shape[0], n, 0, dtype=torch.long, device=latent.device)
        codes = self.rvq_first.encode(latent, 1)
        if n > 1:
            codes = torch.cat([codes, self.rvq_rest.encode(latent, n - 1)], dim=1)
        return codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, K, F]` -> latent `[B, C, F]`."""
        quantized = self.rvq_first.decode(codes[:, :1])
        if codes.shape[1] > 1:
            quantized = quantized + self.rvq_rest.decode(codes[:, 1:])
        return quantized


@dataclass
class CodecStreamState:
    """Streaming state of one direction of the codec, allocated once and updated in place.

    `seanet` holds one buffer per SEANet conv (the carried input tail, or a transposed conv's
    partial output); `resample` is the downsample's carry or the upsample's partial output;
    `first` ([1] bool) is set until the first frame after a reset has been processed.
    """

    seanet: list[torch.Tensor]
    resample: torch.Tensor
    transformer: TransformerState
    first: torch.Tensor

    def reset(self) -> None:
        for buffer in (*self.seanet, self.resample):
            buffer.zero_()
        self.transformer.reset()
        self.first.fill_(True)

    def clone(self):
        return type(self)([b.clone() for b in self.seanet], self.resample.clone(), self.transformer.clone(),
                          self.first.clone())

    def copy_(self, other: CodecStreamState) -> None:
        mine, theirs = (*self.seanet, self.resample, self.first), (*other.seanet, other.resample, other.first)
        for dst, src in zip(mine, theirs, strict=True):
            dst.copy_(src)
        self.transformer.copy_(other.transformer)


class MimiEncoderState(CodecStreamState):
    """State of `Mimi.encode_step` (from `Mimi.init_encoder_state`)."""


class MimiDecoderState(CodecStreamState):
    """State of `Mimi.decode_step` (from `Mimi.init_decoder_state`)."""


class Mimi(nn.Module):
    """The Mimi codec: 24 kHz mono PCM <-> `num_codebooks` codes per 80 ms frame.

    Args:
        config: architecture; the defaults are the released tokenizer.
        device, dtype: where to build the parameters (`device="meta"` builds no storage).

    Load weights with `load_state_dict` (the codebook caches refresh themselves) or call
    `refresh_codebooks()` after writing the buffers another way. Streaming states must be created
    after the module has reached its final device.
    """

    def __init__(self, config: MimiConfig | None = None, device=None, dtype=None):
        super().__init__()
        config = MimiConfig() if config is None else config
        self.config = config
        kw = dict(device=device, dtype=dtype)
        dim, stride = config.seanet.dimension, config.resample_stride
        self.frame_size = config.seanet.hop_length * stride  # samples per code frame
        self.encoder = seanet_encoder(config.seanet, **kw)
        self.decoder = seanet_decoder(config.seanet, **kw)
        self.encoder_transformer = MimiTransformer(config.transformer, **kw)
        self.decoder_transformer = MimiTransformer(config.transformer, **kw)
        self.quantizer = SplitResidualVQ(config.quantizer, config.num_codebooks, **kw)
        # 25 Hz <-> 12.5 Hz: a learnt conv down, a depthwise transposed conv up (the reference's
        # `upsample_channel_wise_bug`). Keys `downsample.conv.conv.conv.*`, `upsample.convtr.convtr.convtr.*`.
        self.downsample = nn.ModuleDict(
            {"conv": CausalConv1d(dim, dim, 2 * stride, stride, bias=False, pad_mode="replicate", **kw)})
        self.upsample = nn.ModuleDict(
            {"convtr": CausalConvTranspose1d(dim, dim, 2 * stride, stride, groups=dim, bias=False, **kw)})

    @property
    def num_codebooks(self) -> int:
        return self.quantizer.num_codebooks

    def refresh_codebooks(self) -> None:
        self.quantizer.refresh()

    # Whole clips.

    def encode_latent(self, wav: torch.Tensor) -> torch.Tensor:
        """PCM `[B, 1, T]` -> unquantised latent `[B, C, ceil(T / frame_size)]` (zero-padded at the end)."""
        return self.downsample.conv(self.encoder_transformer(self.encoder(wav)))

    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """PCM `[B, 1, T]` -> codes `[B, K, ceil(T / frame_size)]` int64, K = `num_codebooks` (default:
        the configured count)."""
        return self.quantizer.encode(self.encode_latent(wav), num_codebooks)

    def decode_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, K, F]` -> quantised latent `[B, C, F]` (12.5 Hz)."""
        return self.quantizer.decode(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, K, F]` -> PCM `[B, 1, F * frame_size]`."""
        return self.decoder(self.decoder_transformer(self.upsample.convtr(self.decode_latent(codes))))

    # Streaming.

    def _state_parts(self, batch_size: int, seanet: Seanet, resample: nn.Module, transformer: MimiTransformer):
        p = next(self.parameters())
        return dict(seanet=seanet.init_state(batch_size, p.device, p.dtype),
                    resample=resample.init_state(batch_size, p.device, p.dtype),
                    transformer=transformer.init_state(batch_size),
                    first=torch.ones(1, dtype=torch.bool, device=p.device))

    def init_encoder_state(self, batch_size: int = 1) -> MimiEncoderState:
        return MimiEncoderState(**self._state_parts(batch_size, self.encoder, self.downsample.conv,
                                                    self.encoder_transformer))

    def init_decoder_state(self, batch_size: int = 1) -> MimiDecoderState:
        return MimiDecoderState(**self._state_parts(batch_size, self.decoder, self.upsample.convtr,
                                                    self.decoder_transformer))

    def encode_step_latent(self, frame: torch.Tensor, state: MimiEncoderState,
                           exact_window: bool = False) -> torch.Tensor:
        """PCM `[B, 1, n * frame_size]` -> latent `[B, C, n]`, continuing the stream in `state`."""
        if frame.shape[-1] % self.frame_size:
            raise ValueError(f"encode_step needs a multiple of {self.frame_size} samples, got {frame.shape[-1]}")
        x = self.encoder.step(frame, state.seanet, state.first)  # [B, C, 2n]
        x = self.encoder_transformer(x, state.transformer, exact_window)
        x = self.downsample.conv.step(x, state.resample, state.first)  # [B, C, n]
        state.first.fill_(False)
        return x

    def encode_step(self, frame: torch.Tensor, state: MimiEncoderState, exact_window: bool = False,
                    num_codebooks: int | None = None) -> torch.Tensor:
        """PCM `[B, 1, n * frame_size]` -> codes `[B, K, n]`, K = `num_codebooks` (default: the configured
        count); the first call already emits."""
        return self.quantizer.encode(self.encode_step_latent(frame, state, exact_window), num_codebooks)

    def decode_step(self, codes: torch.Tensor, state: MimiDecoderState, exact_window: bool = False) -> torch.Tensor:
        """codes `[B, K, n]` -> PCM `[B, 1, n * frame_size]`, continuing the stream in `state`."""
        x = self.upsample.convtr.step(self.decode_latent(codes), state.resample, state.first)  # [B, C, 2n]
        x = self.decoder_transformer(x, state.transformer, exact_window)
        x = self.decoder.step(x, state.seanet, state.first)
        state.first.fill_(False)
        return x
