"""Streaming generator: the token cache with per-stream delays, forced tokens and sampling.

One `step()` per 80 ms frame. The bookkeeping (which column to read or write, which streams are
forced) uses host integers that never depend on tensor values, so there are no host syncs; the
tensor work of a step, `_model_step`, has fixed shapes and can be compiled or graph-captured.

Timeline, as in the reference: the cache is a ring of `max_delay + 3` columns. Call 0 runs no
model; calls 0 and 1 return nothing; from call 2 on, a call returns the frame of real time
`offset - 1` (text, 8 agent codes, 8 user codes). The delayed codebooks of the very first frame
after a reset are replaced by initial tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .lm import UNGENERATED_TOKEN, LMModel
from .sampling import SamplingConfig, sample_token
from .transformer import TransformerState

TEXT_PAD = 3  # the text padding id, forced during prompts


@dataclass
class GenState:
    """Everything a conversation's generator carries from frame to frame.

    Attributes:
        cache: `[B, 17, CT]` int64 ring of tokens, position p at column p % CT.
        provided: `[B, 17, CT]` bool, tokens forced by the caller (kept over sampled ones).
        provided_host: host mirror of `provided` (same for every batch entry), used to skip work
            whose result would be discarded, without reading the device.
        offset: number of `step` calls since the last reset.
        lm: temporal transformer cache; dep: depformer cache (reset every frame).
    """

    cache: torch.Tensor
    provided: torch.Tensor
    provided_host: list[list[bool]]
    offset: int
    lm: TransformerState
    dep: TransformerState

    def reset(self) -> None:
        # The token cache keeps stale values: every column is rewritten before it is read.
        self.provided.zero_()
        self.provided_host = [[False] * len(row) for row in self.provided_host]
        self.offset = 0
        self.lm.reset()

    def snapshot(self) -> GenState:
        """A deep copy, e.g. the state right after the prompt phases."""
        return GenState(self.cache.clone(), self.provided.clone(), [row[:] for row in self.provided_host],
                        self.offset, self.lm.clone(), self.dep.clone())

    def restore(self, snap: GenState) -> None:
        """Copies `snap` into this state in place (buffers keep their addresses, for CUDA graphs)."""
        self.cache.copy_(snap.cache)
        self.provided.copy_(snap.provided)
        self.provided_host = [row[:] for row in snap.provided_host]
        self.offset = snap.offset
        self.lm.copy_(snap.lm)

    def snapshot_touched(self, frames: int) -> TouchedSnapshot:
        """What the next `frames` model calls change: the token ring, the counters and the KV slots
        they write (a few columns per layer instead of the whole cache, which `snapshot` copies).
        The depformer cache is not kept: every frame rewrites it before reading it."""
        return TouchedSnapshot(self.cache.clone(), self.provided.clone(), [row[:] for row in self.provided_host],
                               self.offset, self.lm.snapshot_touched(frames))

    def restore_touched(self, snap: TouchedSnapshot) -> None:
        """Undoes at most `frames` model calls since `snap` was taken, in place."""
        self.cache.copy_(snap.cache)
        self.provided.copy_(snap.provided)
        self.provided_host = [row[:] for row in snap.provided_host]
        self.offset = snap.offset
        self.lm.restore_touched(snap.lm)


@dataclass
class TouchedSnapshot:
    """`GenState.snapshot_touched`: the token ring and the KV cache columns a few frames write."""

    cache: torch.Tensor
    provided: torch.Tensor
    provided_host: list[list[bool]]
    offset: int
    lm: tuple  # TransformerState.snapshot_touched


@dataclass
class StepOutput:
    # [B, 17, 1]: text, agent codes, user codes of real time offset - 1; None while the
    # delayed streams of the first frames are not complete yet (call 1).
    tokens: torch.Tensor | None
    text_logits: torch.Tensor | None = None  # [B, text_card] of this call's temporal pass
    audio_logits: torch.Tensor | None = None  # [B, dep_q, card] float32
    embeddings: torch.Tensor | None = None  # [B, 1, dim] temporal input (to save a voice prompt)


@dataclass
class GeneratorOptions:
    """Work the reference does whose results are always discarded; skipping it keeps greedy
    outputs identical (sampled runs then draw fewer random numbers than the reference)."""

    skip_forced_depformer: bool = True  # depformer sub-steps whose stream is forced (user audio)
    skip_forced_frames: bool = True  # text sampling and depformer when every stream is forced
    exact_window: bool = False  # the trained attention window instead of the reference's
    # Until the temporal ring cache wraps (3000 frames, 4 minutes), attention reads only its
    # written part, rounded up to one of this many equal parts so that a captured step needs
    # only a few graphs: at the start of a conversation this skips most of the ~1.6 GB of bf16
    # keys and values per frame of the released model. 0 reads the whole ring every frame.
    kv_buckets: int = 4


@dataclass
class Generator:
    lm: LMModel
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    options: GeneratorOptions = field(default_factory=GeneratorOptions)
    rng: torch.Generator | None = None

    def __post_init__(self):
        cfg = self.lm.cfg
        self.delays = list(cfg.delays)
        self.max_delay = cfg.max_delay
        self.num_streams = cfg.num_streams
        self.ct = self.max_delay + 3
        self.audio_per_stream = cfg.audio_per_stream
        self.device = next(self.lm.parameters()).device
        self._initial = torch.tensor(self.lm.initial_tokens, dtype=torch.long, device=self.device)
        # Output gather indices for each offset phase, built once (no per-step host->device copy).
        self._gather = [
            torch.tensor([(o - self.max_delay + d) % self.ct for d in self.delays], device=self.device).view(1, -1, 1)
            for o in range(self.ct)
        ]

    # --- state -------------------------------------------------------------------------------
    def init_state(self, batch_size: int = 1) -> GenState:
        lm_state, dep_state = self.lm.init_state(batch_size)
        cache = torch.full((batch_size, self.num_streams, self.ct), UNGENERATED_TOKEN, dtype=torch.long,
                           device=self.device)
        provided = torch.zeros(batch_size, self.num_streams, self.ct, dtype=torch.bool, device=self.device)
        host = [[False] * self.ct for _ in range(self.num_streams)]
        return GenState(cache, provided, host, 0, lm_state, dep_state)

    # --- one frame ---------------------------------------------------------------------------
    def _write(self, state: GenState, first: int, tokens: torch.Tensor | int) -> None:
        """Forces streams first.. with tokens `[B, K, 1]` (or an int for the text stream)."""
        if isinstance(tokens, int):
            items = [(first, tokens)]
        else:
            items = [(first + i, tokens[:, i, 0]) for i in range(tokens.shape[1])]
        for k, value in items:
            col = (state.offset + self.delays[k]) % self.ct
            state.cache[:, k, col] = value
            state.provided[:, k, col] = True
            state.provided_host[k][col] = True

    def _prepare(self, state: GenState, user: torch.Tensor | None, agent: torch.Tensor | None,
                 text: int | torch.Tensor | None) -> bool:
        """Writes forced tokens and the start-up initial tokens; False on the model-less first call."""
        n = self.audio_per_stream
        if user is not None:
            self._write(state, 1 + n, user)
        if agent is not None:
            self._write(state, 1, agent)
        if text is not None:
            if isinstance(text, torch.Tensor):
                text = text.view(-1, 1, 1)
            self._write(state, 0, text)
        for k, delay in enumerate(self.delays):
            if state.offset <= delay:
                col = state.offset % self.ct
                state.cache[:, k, col] = self._initial[k]
                state.provided[:, k, col] = True
                state.provided_host[k][col] = True
        if state.offset == 0:
            state.cache[:, :, 0] = self._initial
            state.offset = 1
            return False
        return True

    def step(self, state: GenState, user: torch.Tensor | None = None, agent: torch.Tensor | None = None,
             text: int | torch.Tensor | None = None, return_logits: bool = False,
             embeddings: torch.Tensor | None = None, return_embeddings: bool = False) -> StepOutput | None:
        """Advances one frame.

        Args:
            user: user audio codes `[B, 8, 1]` (streams 9..16), forced.
            agent: agent audio codes `[B, 8, 1]` (streams 1..8), forced (prompts).
            text: text token (int or `[B]`), forced (prompts).
            embeddings: `[B, 1, dim]` fed to the temporal transformer instead of the embedded
                input column (voice-prompt replay).
        Returns None on the first call after a reset (no model call), else a StepOutput whose
        `tokens` hold the frame of real time `offset - 1` once available.
        """
        if not self._prepare(state, user, agent, text):
            return None
        out = self._run(state, return_logits, embeddings)
        if not return_embeddings:
            out.embeddings = None
        return out

    def step_embeddings(self, state: GenState, embeddings: torch.Tensor, return_logits: bool = False) -> StepOutput:
        """Voice-prompt replay: one model call fed `embeddings` `[B, 1, dim]`, with dummy forced tokens
        (initial audio tokens, text PAD), consuming a second offset on a fresh state, as the reference."""
        n = self.audio_per_stream
        dummy = self._initial[1:1 + n].view(1, n, 1).expand(state.cache.shape[0], n, 1)
        while not self._prepare(state, dummy, dummy, TEXT_PAD):
            pass
        return self._run(state, return_logits, embeddings)

    def step_teacher_forced(self, state: GenState, user: torch.Tensor,
                            column: torch.Tensor | None) -> StepOutput | None:
        """A step with logits whose tokens are all given: `column` `[B, 17]` is what another run
        chose at this step (its cache column `offset % CT` after the step, forced or sampled), so
        this model sees exactly that run's history, its depformer included (quality checks).
        None on the model-less first call after a reset."""
        tgt = state.offset % self.ct
        if not self._prepare(state, user, None, None):
            return None
        if column is not None:
            state.cache[:, :, tgt] = column
            state.provided[:, :, tgt] = True
            for row in state.provided_host:
                row[tgt] = True
        return self._run(state, True, None)

    def kv_limit(self, state: GenState, tokens: int = 1) -> int | None:
        """How many temporal cache slots the next call on `tokens` frames must read (None: all).

        Host arithmetic only: the temporal pass runs once per model call after the first step of
        a reset, so it has written `state.offset - 1` keys before this call.
        """
        capacity = state.lm.keys[0].shape[2]
        written = max(state.offset - 1, 0) + tokens  # offset 0 runs no model call
        if self.options.kv_buckets <= 1 or written >= capacity:
            return None
        part = self._kv_part(capacity)
        limit = -(-written // part) * part
        return limit if limit < capacity else None

    def kv_limits_ahead(self, state: GenState) -> list[int | None]:
        """Every `kv_limit` that later frames of this state will use, from the next one on."""
        first = self.kv_limit(state)
        if first is None:
            return [None]
        capacity = state.lm.keys[0].shape[2]
        return [*range(first, capacity, self._kv_part(capacity)), None]

    def _kv_part(self, capacity: int) -> int:
        """Slots in one of the `kv_buckets` equal parts of the temporal ring (rounded up)."""
        return -(-capacity // self.options.kv_buckets)

    def _run(self, state: GenState, return_logits: bool, embeddings: torch.Tensor | None) -> StepOutput:
        inp, tgt = (state.offset - 1) % self.ct, state.offset % self.ct
        forced = [state.provided_host[k][tgt] for k in range(self.num_streams)]
        skip_all = self.options.skip_forced_frames and all(forced) and not return_logits
        depformer_steps = self.lm.cfg.dep_q
        if self.options.skip_forced_depformer and not return_logits:
            # Sub-steps are causal: trailing forced streams cannot change the earlier ones.
            while depformer_steps > 0 and forced[depformer_steps]:
                depformer_steps -= 1
        if embeddings is None:
            embeddings = self.lm.embed(state.cache[:, :, inp:inp + 1])
        text_logits, audio_logits = self._model_step(
            state, embeddings, state.cache[:, :, tgt], state.provided[:, :, tgt],
            0 if skip_all else depformer_steps, skip_all, self.kv_limit(state),
        )
        state.provided[:, :, inp] = False
        for k in range(self.num_streams):
            state.provided_host[k][inp] = False
        if not return_logits:
            text_logits = audio_logits = None
        if state.offset <= self.max_delay:
            state.offset += 1
            return StepOutput(None, text_logits, audio_logits, embeddings)
        index = self._gather[state.offset % self.ct].expand(state.cache.shape[0], -1, 1)
        out = state.cache.gather(2, index)
        state.offset += 1
        return StepOutput(out, text_logits, audio_logits, embeddings)

    def _model_step(self, state: GenState, embeddings: torch.Tensor, target: torch.Tensor,
                    provided: torch.Tensor, depformer_steps: int, skip_text: bool, kv_limit: int | None = None):
        """Temporal pass, text sampling and depformer loop; writes sampled tokens into `target`
        (a view of the cache column) where not provided. Tensor-only: no host syncs.

        Returns (text logits `[B, text_card]`, depformer logits `[B, depformer_steps, card]`).
        """
        s = self.sampling
        z, text_logits = self.lm.temporal(embeddings, state.lm, self.options.exact_window, kv_limit)
        text_logits = text_logits[:, 0]
        if skip_text:
            return text_logits, None
        text = sample_token(text_logits, s.use_sampling, s.temp_text, s.top_k_text, self.rng)
        target[:, 0] = torch.where(provided[:, 0], target[:, 0], text)
        prev = target[:, 0]
        state.dep.reset()
        logits = []
        for n in range(depformer_steps):
            step_logits = self.lm.depformer_step(n, z, prev, state.dep)
            logits.append(step_logits.float())
            token = sample_token(step_logits, s.use_sampling, s.temp_audio, s.top_k_audio, self.rng)
            target[:, n + 1] = torch.where(provided[:, n + 1], target[:, n + 1], token)
            prev = target[:, n + 1]
        audio_logits = torch.stack(logits, dim=1) if logits else None
        return text_logits, audio_logits
