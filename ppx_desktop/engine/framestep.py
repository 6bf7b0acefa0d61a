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
"cuda-graph" on CUDA and "off" elsewhere. Graphs come from a backend (`graphs.py`): real CUDA
graphs sharing one memory pool, or, on the CPU and the meta device, an eager stand-in that runs
the same capture procedure (tests of the capture logic, memory traces of the released size).

Capture and warm-up need no second copy of the state: they snapshot only what the frames they
run touch (the token ring, the KV slots written, Mimi's small states) and restore it. A capture
that fails falls back to the eager frame, state restored, with the reason kept in
`fallback_reason` for the caller to show once.

Sampling: eagerly, draws come from the generator's `rng` in exactly the order `Generator.step`
uses, so the eager frame step equals `encode_step -> Generator.step -> decode_step`. Captured
modes draw from the device's default generator (seed it with `torch.manual_seed`): a captured
graph cannot take a user generator, and their outputs under sampling differ from the eager ones.
"""

from __future__ import annotations

import logging
import time
import typing as tp
from dataclasses import dataclass

import numpy as np
import torch

from .config import FRAME_SIZE
from .generator import Generator, GenState
from .mimi import MimiDecoderState, MimiEncoderState
from .sampling import sample_token

log = logging.getLogger(__name__)

CAPTURE_MODES = ("auto", "off", "compile", "cuda-graph")


@dataclass
class FrameResult:
    pcm: np.ndarray  # [1920] float32, the agent's audio of this frame
    text_id: int  # the agent's text token aligned with that audio
    text_prob: float  # its probability under the temperature-free softmax (1.0 if it was forced)
    tokens: np.ndarray | None = None  # [17] int64: the whole frame (text, agent codes, user codes)
    user_text_id: int | None = None  # with a transcriber: the user's text token of this frame
    end_of_turn: float | None = None  # and its end-of-turn probability


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
        graphs: the graph backend for "cuda-graph" (default: real CUDA graphs, one shared pool);
            `graphs.EagerGraphs` runs the capture logic on any device.
    """

    def __init__(self, model, gen: Generator, *, capture: str = "auto", compile_options: dict | None = None,
                 graphs=None, transcriber=None):
        if capture not in CAPTURE_MODES:
            raise ValueError(f"capture must be one of {', '.join(CAPTURE_MODES)}, got {capture!r}")
        self.mimi, self.gen, self.lm = model.mimi, gen, gen.lm
        self.device = gen.device
        streamed = self.lm.streamer is not None  # layers stream from host memory
        if capture == "auto":
            capture = "cuda-graph" if self.device.type == "cuda" and not streamed else "off"
        if streamed and capture != "off":
            raise ValueError("a model with layers in host memory runs eagerly: use capture='off'")
        if capture == "cuda-graph" and self.device.type != "cuda" and graphs is None:
            raise ValueError("capture='cuda-graph' needs a CUDA device; use 'compile' or 'off'")
        self.capture = capture
        self.fallback_reason: str | None = None  # why captured frames fell back to eager ones
        cfg = self.lm.cfg
        self.n, self.ct, self.max_delay = cfg.audio_per_stream, gen.ct, cfg.max_delay
        self.user_streams = list(range(1 + self.n, cfg.num_streams))
        dev = self.device
        self._user_delays = torch.tensor([cfg.delays[k] for k in self.user_streams], device=dev)
        self._out_shift = torch.tensor([d - self.max_delay for d in cfg.delays], device=dev)
        pin = dev.type == "cuda"
        self._pcm_host = torch.zeros(FRAME_SIZE, dtype=torch.float32, pin_memory=pin)
        self._pcm_dev = torch.zeros(1, 1, FRAME_SIZE, dtype=torch.float32, device=dev)
        self.transcriber = transcriber
        # One encode feeds both models: as many codebooks as the speech-to-text model reads.
        self._codebooks = max(self.n, transcriber.n_q) if transcriber is not None else self.n
        available = 1 + len(self.mimi.quantizer.rvq_rest.codebooks)
        if self._codebooks > available:
            raise ValueError(f"the speech-to-text model reads {self._codebooks} codebooks but this codec has "
                             f"{available}")
        extra = 2 if transcriber is not None else 0
        self._out_host = torch.zeros(FRAME_SIZE + 2 + cfg.num_streams + extra, dtype=torch.float32, pin_memory=pin)
        self._event = torch.cuda.Event() if pin else None
        self._compiled = None
        if capture == "compile":
            options = {"fullgraph": True, "dynamic": False, **(compile_options or {})}
            self._compiled = torch.compile(self._frame, **options)
        # "cuda-graph": (depformer steps, kv limit) -> (replay, static output), all captured on
        # the state buffers in `_graph_buffers`.
        self.graphs = None
        if capture == "cuda-graph":
            from .graphs import CudaGraphs

            self.graphs = graphs if graphs is not None else CudaGraphs(self.device)
        self._graphs: dict[tuple[int, int | None], tuple[tp.Callable[[], None], torch.Tensor]] = {}
        self._graph_buffers: tuple[int, int, int] | None = None

    # --- states ------------------------------------------------------------------------------
    def init_codec_state(self, batch_size: int = 1) -> CodecState:
        return CodecState(self.mimi.init_encoder_state(batch_size), self.mimi.init_decoder_state(batch_size),
                          torch.ones(batch_size, dtype=torch.float32, device=self.device))

    # --- the captured part -------------------------------------------------------------------
    def _frame(self, pcm: torch.Tensor, state: GenState, codec: CodecState, depformer_steps: int,
               rng: torch.Generator | None, kv_limit: int | None = None,
               mark: tp.Callable[[], None] | None = None) -> torch.Tensor:
        """Tensor-only frame: returns `[1920 + 2 + 17]` float32 (PCM, text id, text probability, the
        frame's tokens; ids are exact in float32).

        `mark()` (eager timing only, see `timed`) is called after the encode and after the LM."""
        s, gen = self.gen.sampling, self.gen
        cache, provided = state.cache, state.provided
        B, S, _ = cache.shape
        codes_all = self.mimi.encode_step(pcm, codec.enc, num_codebooks=self._codebooks)  # [B, K, 1]
        codes = codes_all[:, :self.n]  # PersonaPlex's 8 (the first codebooks of a residual encode)
        if mark is not None:
            mark()
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
        if mark is not None:
            mark()
        pcm_out = self.mimi.decode_step(out[:, 1:1 + self.n], codec.dec)  # [B, 1, 1920]
        prob = torch.softmax(text_logits.float(), dim=-1).gather(-1, tokens[0][:, None])[:, 0]
        reported = codec.text_prob.clone()
        codec.text_prob.copy_(torch.where(forced[:, 0], 1.0, prob))
        packed = [pcm_out[0, 0].float(), out[0, 0].float(), reported[:1], out[0, :, 0].float()]
        if self.transcriber is not None:
            user_text, end_of_turn = self.transcriber.step(codes_all)
            packed += [user_text[:1], end_of_turn[:1]]
        return torch.cat(packed)

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
        if self.capture == "compile":
            try:
                return self._compiled(self._pcm_dev, state, codec, steps, None, limit)
            except Exception as exc:  # e.g. no working C compiler or Triton: the eager frame still runs
                self._fall_back(f"compiling the frame failed ({type(exc).__name__}: {exc})")
        if self.capture == "cuda-graph":
            buffers = self._buffers(state, codec)
            if self._graph_buffers != buffers:  # other states: graphs captured on the old ones are stale
                self.release_graphs()
                self._graph_buffers = buffers
            key = (steps, limit)
            if key not in self._graphs:
                self._capture(state, codec, steps, limit)
            if key in self._graphs:
                replay, out = self._graphs[key]
                replay()
                return out
        return self._frame(self._pcm_dev, state, codec, steps, self.gen.rng, limit)

    def _buffers(self, state: GenState, codec: CodecState) -> tuple[int, ...]:
        """The addresses a captured graph is bound to."""
        return (state.cache.data_ptr(), state.lm.keys[0].data_ptr(), codec.enc.first.data_ptr(),
                self.transcriber.state.tokens.data_ptr() if self.transcriber is not None else 0)

    def _capture(self, state: GenState, codec: CodecState, steps: int, limit: int | None) -> None:
        """Captures `_frame` on the given states' buffers; the states are left unchanged. The
        capture runs three frames (two warm-up frames off the graph, then the captured one), so
        only what three frames touch is saved and restored."""
        snap = self._touched(state, codec, 3)
        try:
            self._graphs[(steps, limit)] = self.graphs.capture(
                lambda: self._frame(self._pcm_dev, state, codec, steps, None, limit))
        except Exception as exc:  # the frame still runs eagerly, from the same state
            self._fall_back(f"capturing the frame as a CUDA graph failed ({type(exc).__name__}: {exc})")
        finally:
            self._restore(state, codec, snap)

    def _touched(self, state: GenState, codec: CodecState, frames: int) -> tuple:
        """What `frames` frames change, to undo them: the generator's touched slots, Mimi's states
        and the transcriber's touched slots."""
        stt = self.transcriber.snapshot_touched(frames) if self.transcriber is not None else None
        return state.snapshot_touched(frames), codec.snapshot(), stt

    def _restore(self, state: GenState, codec: CodecState, snap: tuple) -> None:
        g_snap, c_snap, stt = snap
        state.restore_touched(g_snap)
        codec.restore(c_snap)
        if stt is not None:
            self.transcriber.restore_touched(stt)

    def _fall_back(self, reason: str) -> None:
        log.warning("frames run eagerly from now on: %s", reason)
        self.fallback_reason = reason
        self.capture = "off"
        self.release_graphs()

    def release_graphs(self) -> None:
        """Drops every captured graph (and, with them, their memory pool)."""
        self._graphs.clear()
        if self.graphs is not None:
            self.graphs.release()

    def __call__(self, state: GenState, codec: CodecState, user_pcm: np.ndarray) -> FrameResult:
        return self._step(state, codec, user_pcm)

    def timed(self, state: GenState, codec: CodecState, user_pcm: np.ndarray
              ) -> tuple[FrameResult, tuple[float, float, float]]:
        """One eager frame, synchronised after each part: (result, (encode, LM, decode) seconds).
        The three add up to the frame (the copies in and out count with encode and decode)."""
        marks = [time.perf_counter()]

        def mark() -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            marks.append(time.perf_counter())

        result = self._step(state, codec, user_pcm, mark)
        marks.append(time.perf_counter())
        return result, (marks[1] - marks[0], marks[2] - marks[1], marks[3] - marks[2])

    def _step(self, state: GenState, codec: CodecState, user_pcm: np.ndarray,
              mark: tp.Callable[[], None] | None = None) -> FrameResult:
        self._check(state, user_pcm)
        steps = self._depformer_steps(state) if mark is None or self.capture == "off" else self.lm.cfg.dep_q
        self._pcm_host.copy_(torch.from_numpy(np.asarray(user_pcm, dtype=np.float32)))
        self._pcm_dev.view(-1).copy_(self._pcm_host, non_blocking=True)  # the frame's one H2D copy
        limit = self.gen.kv_limit(state)
        if mark is None:
            packed = self._run(state, codec, steps, limit)
        else:
            packed = self._frame(self._pcm_dev, state, codec, steps, self.gen.rng, limit, mark)
        if packed.is_meta:  # traces of the released size on the meta device: shapes, no values
            self._out_host.zero_()
        else:
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
        streams = self.lm.cfg.num_streams
        tokens = host[FRAME_SIZE + 2:FRAME_SIZE + 2 + streams].astype(np.int64)
        result = FrameResult(host[:FRAME_SIZE].copy(), int(host[FRAME_SIZE]), float(host[FRAME_SIZE + 1]), tokens)
        if self.transcriber is not None:
            result.user_text_id = int(host[FRAME_SIZE + 2 + streams])
            result.end_of_turn = float(host[FRAME_SIZE + 3 + streams])
        return result

    def warmup(self, state: GenState, codec: CodecState) -> None:
        """Compiles or captures before the first real frame, also the variants that read more of
        the cache later on (so none is built mid-conversation); leaves `state` and `codec` unchanged."""
        if self.capture == "off":
            return
        self._check(state, np.zeros(FRAME_SIZE, dtype=np.float32))
        snap = self._touched(state, codec, 1)
        self._pcm_dev.zero_()
        steps = self._depformer_steps(state)
        # A larger limit than needed is still exact (the extra slots are empty and masked).
        for limit in self.gen.kv_limits_ahead(state):
            if self.capture == "cuda-graph":
                # Capturing is all a graph needs; one already captured (an earlier conversation on
                # the same buffers) needs nothing, and no replay is owed here.
                if self._buffers(state, codec) != self._graph_buffers:
                    self.release_graphs()
                    self._graph_buffers = self._buffers(state, codec)
                if (steps, limit) not in self._graphs:
                    self._capture(state, codec, steps, limit)
            else:
                for _ in range(2):  # the second call checks that nothing recompiles
                    self._run(state, codec, steps, limit)
                    self._restore(state, codec, snap)
            if self.capture == "off":  # fell back: nothing more to prepare
                return
