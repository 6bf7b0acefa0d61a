"""One 80 ms frame of a live conversation as one fixed-shape, host-sync-free function.

`FrameStep(state, codec, user_pcm)` encodes the user's frame with Mimi, runs the generator's
temporal pass, text sampling and the depformer sub-steps, and decodes the agent's frame. The
tensor work (`_frame`) reads every position from device tensors (the token ring's columns are
computed from the temporal cache's offset), so one compiled function or one CUDA graph replays
every frame; the host keeps only its mirror of the bookkeeping (`GenState.offset`,
`provided_host`). Per frame there is exactly one host-to-device copy (the PCM, from a pinned
buffer) and one device-to-host copy (PCM, text id, its probability and the frame's 17 tokens,
which a conversation records for its context refresh, packed in one tensor).

Capture modes: "off" runs `_frame` eagerly (the reference for tests), "compile" runs it through
`torch.compile(fullgraph=True)`, "cuda-graph" replays it as one captured CUDA graph; "auto" is
"cuda-graph" on CUDA and "off" elsewhere.

Sampling: eagerly, draws come from the generator's `rng` in exactly the order `Generator.step`
uses, so the eager frame step equals `encode_step -> Generator.step -> decode_step`. Captured
modes draw from the device's default generator (seed it with `torch.manual_seed`): a captured
graph cannot take a user generator, and their outputs under sampling differ from the eager ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import FRAME_SIZE
from .generator import Generator, GenState
from .mimi import MimiDecoderState, MimiEncoderState
from .sampling import sample_token

CAPTURE_MODES = ("auto", "off", "compile", "cuda-graph")


@dataclass
class FrameResult:
    pcm: np.ndarray  # [1920] float32, the agent's audio of this frame
    text_id: int  # the agent's text token aligned with that audio
    text_prob: float  # its probability under the temperature-free softmax (1.0 if it was forced)
    tokens: np.ndarray | None = None  # [17] int64: the whole frame (text, agent codes, user codes)


@dataclass
class CodecState:
    """Mimi's streaming states for both directions plus the pending text probability.

    `text_prob` `[B]` holds the probability of the text token sampled in the last frame: that
    token is reported one frame later, aligned with its audio.
    """

    enc: MimiEncoderState
    dec: MimiDecoderState
    text_prob: torch.Tensor

    def reset(self) -> None:
        self.enc.reset()
        self.dec.reset()
        self.text_prob.fill_(1.0)

    def snapshot(self) -> CodecState:
        return CodecState(self.enc.clone(), self.dec.clone(), self.text_prob.clone())

    def restore(self, snap: CodecState) -> None:
        """Copies `snap` in place (buffers keep their addresses, for CUDA graphs)."""
        self.enc.copy_(snap.enc)
        self.dec.copy_(snap.dec)
        self.text_prob.copy_(snap.text_prob)


class FrameStep:
    """Encode user frame + generator step + decode agent frame, one call per 80 ms.

    Args:
        model: the loaded model (its Mimi codec is used).
        gen: the generator (its LM, sampling settings, options and rng).
        capture: "off", "compile", "cuda-graph" or "auto" (see the module docstring).
        compile_options: extra `torch.compile` arguments for "compile" (e.g. a backend).
    """

    def __init__(self, model, gen: Generator, *, capture: str = "auto", compile_options: dict | None = None):
        if capture not in CAPTURE_MODES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURE_MODES)}, got {capture!r}")
        self.mimi, self.gen, self.lm = model.mimi, gen, gen.lm
        self.device = gen.device
        streamed = self.lm.streamer is not None  # layers stream from host memory
        if capture == "auto":
            capture = "cuda-graph" if self.device.type == "cuda" and not streamed else "off"
        if streamed and capture != "off":
            raise ValueError("a model with layers in host memory runs eagerly: use capture='off'")
        if capture == "cuda-graph" and self.device.type != "cuda":
            raise ValueError("capture='cuda-graph' needs a CUDA device; use 'compile' or 'off'")
        self.capture = capture
        cfg = self.lm.cfg
        self.n, self.ct, self.max_delay = cfg.audio_per_stream, gen.ct, cfg.max_delay
        self.user_streams = list(range(1 + self.n, cfg.num_streams))
        dev = self.device
        self._user_delays = torch.tensor([cfg.delays[k] for k in self.user_streams], device=dev)
        self._out_shift = torch.tensor([d - self.max_delay for d in cfg.delays], device=dev)
        pin = dev.type == "cuda"
        self._pcm_host = torch.zeros(FRAME_SIZE, dtype=torch.float32, pin_memory=pin)
        self._pcm_dev = torch.zeros(1, 1, FRAME_SIZE, dtype=torch.float32, device=dev)
        self._out_host = torch.zeros(FRAME_SIZE + 2 + cfg.num_streams, dtype=torch.float32, pin_memory=pin)
        self._event = torch.cuda.Event() if pin else None
        self._compiled = None
        if capture == "compile":
            options = {"fullgraph": True, "dynamic": False, **(compile_options or {})}
            self._compiled = torch.compile(self._frame, **options)
        # "cuda-graph": (depformer steps, kv limit) -> (CUDAGraph, static output), all captured
        # on the state buffers in `_graph_buffers`.
        self._graphs: dict[tuple[int, int | None], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._graph_buffers: tuple[int, int, int] | None = None

    # --- states ------------------------------------------------------------------------------
    def init_codec_state(self, batch_size: int = 1) -> CodecState:
        return CodecState(self.mimi.init_encoder_state(batch_size), self.mimi.init_decoder_state(batch_size),
                          torch.ones(batch_size, dtype=torch.float32, device=self.device))

    # --- the captured part -------------------------------------------------------------------
    def _frame(self, pcm: torch.Tensor, state: GenState, codec: CodecState, depformer_steps: int,
               rng: torch.Generator | None, kv_limit: int | None = None) -> torch.Tensor:
        """Tensor-only frame: returns `[1920 + 2 + 17]` float32 (PCM, text id, text probability, the
        frame's tokens; ids are exact in float32)."""
        s, gen = self.gen.sampling, self.gen
        cache, provided = state.cache, state.provided
        B, S, _ = cache.shape
        codes = self.mimi.encode_step(pcm, codec.enc)  # [B, n, 1]
        # The temporal pass has run once per call after the first, so the generator's offset is
        # the temporal cache's offset + 1: ring columns follow from device data alone.
        off = state.lm.offset + 1  # [1]
        user_cols = ((off + self._user_delays) % self.ct).view(1, -1, 1).expand(B, -1, 1)
        cache[:, 1 + self.n:].scatter_(2, user_cols, codes)
        provided[:, 1 + self.n:].scatter_(2, user_cols, True)
        inp = ((off - 1) % self.ct).view(1, 1, 1).expand(B, S, 1)
        tgt = (off % self.ct).view(1, 1, 1).expand(B, S, 1)
        z, text_logits = self.lm.temporal(self.lm.embed(cache.gather(2, inp)), state.lm, gen.options.exact_window,
                                          kv_limit)
        text_logits = text_logits[:, 0]
        target, forced = cache.gather(2, tgt)[..., 0], provided.gather(2, tgt)[..., 0]  # [B, S]
        text = sample_token(text_logits, s.use_sampling, s.temp_text, s.top_k_text, rng)
        tokens = [torch.where(forced[:, 0], target[:, 0], text)]
        for k in range(depformer_steps):
            logits = self.lm.depformer_step(k, z, tokens[-1], state.dep)
            token = sample_token(logits, s.use_sampling, s.temp_audio, s.top_k_audio, rng)
            tokens.append(torch.where(forced[:, k + 1], target[:, k + 1], token))
        m = 1 + depformer_steps
        cache[:, :m].scatter_(2, tgt[:, :m], torch.stack(tokens, dim=1)[..., None])
        provided.scatter_(2, inp, False)
        out = cache.gather(2, ((off + self._out_shift) % self.ct).view(1, S, 1).expand(B, S, 1))  # [B, S, 1]
        pcm_out = self.mimi.decode_step(out[:, 1:1 + self.n], codec.dec)  # [B, 1, 1920]
        prob = torch.softmax(text_logits.float(), dim=-1).gather(-1, tokens[0][:, None])[:, 0]
        reported = codec.text_prob.clone()
        codec.text_prob.copy_(torch.where(forced[:, 0], 1.0, prob))
        return torch.cat([pcm_out[0, 0].float(), out[0, 0].float(), reported[:1], out[0, :, 0].float()])

    # --- host side ---------------------------------------------------------------------------
    def _depformer_steps(self, state: GenState) -> int:
        """Sub-steps to run: in captured modes always the agent's codebooks (one graph for every
        frame); eagerly the generator's rule, so that seeded sampling draws the same numbers."""
        dep_q = self.lm.cfg.dep_q
        if not self.gen.options.skip_forced_depformer:
            return dep_q
        if self.capture != "off":
            return self.n
        tgt = state.offset % self.ct
        forced = [state.provided_host[k][tgt] for k in range(self.lm.cfg.num_streams)]
        for k in self.user_streams:
            if (state.offset + self.gen.delays[k]) % self.ct == tgt:
                forced[k] = True
        steps = dep_q
        while steps > 0 and forced[steps]:
            steps -= 1
        return steps

    def _check(self, state: GenState, user_pcm: np.ndarray) -> None:
        if state.cache.shape[0] != 1:
            raise ValueError("FrameStep runs batch 1")
        if state.offset <= self.max_delay:
            raise ValueError(f"FrameStep needs a state past the start-up frames (offset {state.offset}); "
                             "run the prompt phases with Generator.step first")
        if state.provided_host[0][state.offset % self.ct]:
            raise ValueError("the text stream is forced at this frame: the prompt phases are not finished")
        if np.shape(user_pcm) != (FRAME_SIZE,):
            raise ValueError(f"user_pcm must hold {FRAME_SIZE} samples, got shape {np.shape(user_pcm)}")

    def _run(self, state: GenState, codec: CodecState, steps: int, limit: int | None) -> torch.Tensor:
        # One compiled variant / captured graph per cache part read (GeneratorOptions.kv_buckets).
        if self.capture == "off":
            return self._frame(self._pcm_dev, state, codec, steps, self.gen.rng, limit)
        if self.capture == "compile":
            return self._compiled(self._pcm_dev, state, codec, steps, None, limit)
        buffers = (state.cache.data_ptr(), state.lm.keys[0].data_ptr(), codec.enc.first.data_ptr())
        if self._graph_buffers != buffers:  # other states: graphs captured on the old ones are stale
            self._graphs.clear()
            self._graph_buffers = buffers
        key = (steps, limit)
        if key not in self._graphs:
            self._graphs[key] = self._capture_graph(state, codec, steps, limit)
        graph, out = self._graphs[key]
        graph.replay()
        return out

    def _capture_graph(self, state: GenState, codec: CodecState, steps: int, limit: int | None):
        """Captures `_frame` on the given states' buffers; the states are left unchanged."""
        g_snap, c_snap = state.snapshot(), codec.snapshot()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up off the graph: lazy inits, cuBLAS workspaces
                self._frame(self._pcm_dev, state, codec, steps, None, limit)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # Each graph keeps its own memory pool: a frame's activations are small (tens of MB), and
        # shared pools are only safe when graphs replay in the order they were captured.
        with torch.cuda.graph(graph):
            out = self._frame(self._pcm_dev, state, codec, steps, None, limit)
        state.restore(g_snap)
        codec.restore(c_snap)
        return graph, out

    def __call__(self, state: GenState, codec: CodecState, user_pcm: np.ndarray) -> FrameResult:
        self._check(state, user_pcm)
        steps = self._depformer_steps(state)
        self._pcm_host.copy_(torch.from_numpy(np.asarray(user_pcm, dtype=np.float32)))
        self._pcm_dev.view(-1).copy_(self._pcm_host, non_blocking=True)  # the frame's one H2D copy
        packed = self._run(state, codec, steps, self.gen.kv_limit(state))
        self._out_host.copy_(packed, non_blocking=True)  # the frame's one D2H copy
        # Host bookkeeping, mirroring Generator._prepare/_run (no device reads).
        inp = (state.offset - 1) % self.ct
        for k in self.user_streams:
            state.provided_host[k][(state.offset + self.gen.delays[k]) % self.ct] = True
        for row in state.provided_host:
            row[inp] = False
        state.offset += 1
        if self._event is not None:
            self._event.record()
            self._event.synchronize()
        host = self._out_host.numpy()
        return FrameResult(host[:FRAME_SIZE].copy(), int(host[FRAME_SIZE]), float(host[FRAME_SIZE + 1]),
                           host[FRAME_SIZE + 2:].astype(np.int64))

    def warmup(self, state: GenState, codec: CodecState) -> None:
        """Compiles or captures before the first real frame, also the variants that read more of
        the cache later on (so none is built mid-conversation); leaves `state` and `codec` unchanged."""
        if self.capture == "off":
            return
        self._check(state, np.zeros(FRAME_SIZE, dtype=np.float32))
        g_snap, c_snap = state.snapshot(), codec.snapshot()
        self._pcm_dev.zero_()
        steps = self._depformer_steps(state)
        # A larger limit than needed is still exact (the extra slots are empty and masked).
        for limit in self.gen.kv_limits_ahead(state):
            for _ in range(2):  # the second call checks that nothing recompiles or re-captures
                self._run(state, codec, steps, limit)
                state.restore(g_snap)
                codec.restore(c_snap)
