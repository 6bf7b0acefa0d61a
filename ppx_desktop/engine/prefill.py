"""Batched prefill: the prompt phases (and a context refresh) as a few temporal passes.

Every stream is forced during the prompt phases, so a prompt step leaves nothing behind but the
temporal transformer's keys and values at its position and the token ring's bookkeeping: its
sampled tokens are discarded and the depformer's output is never used. `Prefiller.frames` gets
the same result for a run of forced frames at once: it reads every step's model input from the
frames and the per-stream delays (what the stepwise path reads from the token ring one column
at a time), runs the temporal layers over those inputs in chunks, and leaves the token ring, the
forced flags (device and host) and both offsets as the steps would. No depformer, no sampling,
no random numbers (the stepwise path draws none either with `skip_forced_frames`, the default).

Attention is the stepwise one: a step at position q sees the keys of positions q - W + 1 .. q,
with W = context - 1 under the reference's ring labelling (transformer.py) or W = context with
`exact_window`. A chunk attends in place while the ring has not wrapped; a chunk that would
overwrite keys its own queries still see attends over a copy of them instead. The results
equal the stepwise ones up to floating-point summation order (matrix products over many rows).

Mimi: a WAV voice prompt is still encoded frame by frame (`Mimi.encode_step`). A whole-clip
encode gives other codes once the clip outlasts the codec's attention ring (250 latent steps,
124 frames or about 10 s, for the released Mimi), the reference's ring quirk (§2.7 of the spec;
tests/engine/test_prefill.py shows it on the fixture codec), and custom voices are 10-30 s.

Activation memory is bounded by the chunk (`prefill_activation_bytes`), not by the prefill's
length: a chunk of `chunk` positions holds its own activations plus the attention over at most
context + chunk keys.
"""

from __future__ import annotations

import typing as tp

import numpy as np
import torch

from .config import FRAME_SIZE, LMConfig, PromptConfig
from .generator import TEXT_PAD, Generator, GenState
from .lm import UNGENERATED_TOKEN
from .prompts import SILENCE_FRAMES, VoicePrompt, text_phase_steps, voice_phase_steps
from .transformer import StepContext, rope_tables

PREFILL_CHUNK = 256  # positions per temporal pass


class PromptSnapshot(tp.Protocol):
    """A post-prompt state that can be written back into a GenState (session/statecache.py)."""

    offset: int

    def apply(self, state: GenState) -> None: ...


class Prefiller:
    """Batched prompt phases and context refreshes for one generator.

    Args:
        gen: the generator whose states are filled (its LM, delays, token ring layout, options).
        chunk: positions per temporal pass; bounds the activation memory (see the module doc).
    """

    def __init__(self, gen: Generator, chunk: int = PREFILL_CHUNK):
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.gen, self.lm, self.chunk = gen, gen.lm, chunk
        cfg = self.lm.cfg
        self.n, self.ct, self.num_streams = cfg.audio_per_stream, gen.ct, cfg.num_streams
        dev = gen.device
        self._delays = torch.tensor(gen.delays, dtype=torch.long, device=dev).view(-1, 1)  # [K, 1]
        self._initial = torch.tensor(self.lm.initial_tokens, dtype=torch.long, device=dev).view(1, -1, 1)

    # --- forced frames -------------------------------------------------------------------------
    def frames(self, state: GenState, frames: torch.Tensor, *, return_inputs: bool = False) -> torch.Tensor | None:
        """Same as `gen.step(state, user=frames[:, 9:, s], agent=frames[:, 1:9, s], text=frames[:, 0, s])`
        for every s, all streams forced, in one batched pass.

        Args:
            frames: `[B, 17, S]` int64 on the state's device, real-time frames (text, agent codes,
                user codes), as the generator's outputs are laid out.
            return_inputs: also return the temporal inputs of the model calls `[B, calls, dim]`.
        """
        start = max(state.offset, 1) - 1  # temporal position of the first model call
        columns = self._input_columns(state, frames)
        self._advance(state, frames)
        return self._temporal(state, start, columns.shape[-1], lambda a, b: self.lm.embed(columns[:, :, a:b]),
                              return_inputs)

    def embeddings(self, state: GenState, embeddings: torch.Tensor) -> None:
        """Same as one `gen.step_embeddings` per vector of `embeddings` `[B, E, dim]` on a fresh state."""
        if state.offset != 0:
            raise ValueError("a voice replay starts on a freshly reset state")
        B, E, _ = embeddings.shape
        # step_embeddings forces initial audio tokens and text padding on every call, E + 1 calls.
        dummy = self._initial.expand(B, -1, E + 1).clone()
        dummy[:, 0] = TEXT_PAD
        self._advance(state, dummy)
        self._temporal(state, 0, E, lambda a, b: embeddings[:, a:b], False)

    def _input_columns(self, state: GenState, frames: torch.Tensor) -> torch.Tensor:
        """The token column each model call of `frames` reads: `[B, 17, calls]`.

        Position p holds, for stream k, the frame given at call p - delay_k; the initial token if
        that call made the stream's start-up fill (p <= delay_k); else what the ring held before.
        """
        B, K, S = frames.shape
        o0, dev = state.offset, frames.device
        start = max(o0, 1) - 1
        calls = o0 + S - 1 - start
        if calls <= 0:
            return frames.new_empty(B, K, 0)
        pos = start + torch.arange(calls, device=dev).view(1, -1)  # [1, calls]
        j = pos - self._delays - o0  # [K, calls], index into `frames`
        src = torch.where(j >= 0, self.ct + j, pos % self.ct)
        src = torch.where((pos >= o0) & (pos <= self._delays), self.ct + S, src)
        pool = torch.cat([state.cache, frames, self._initial.expand(B, -1, 1)], dim=2)  # ring | frames | initial
        return pool.gather(2, src.expand(B, -1, -1))

    def _advance(self, state: GenState, frames: torch.Tensor) -> None:
        """The token ring, forced flags and offset after the steps of `frames`.

        CT consecutive steps write every ring column of every stream, so only the last CT steps
        decide the result: they run the generator's own bookkeeping, the earlier ones are skipped.
        """
        S = frames.shape[-1]
        tail = min(S, self.ct)
        state.offset += S - tail
        n = self.n
        for s in range(S - tail, S):
            o = state.offset
            if self.gen._prepare(state, frames[:, 1 + n:, s:s + 1], frames[:, 1:1 + n, s:s + 1], frames[:, 0, s]):
                inp = (o - 1) % self.ct  # as Generator._run after its model call
                state.provided[:, :, inp] = False
                for row in state.provided_host:
                    row[inp] = False
                state.offset += 1

    # --- the temporal pass ---------------------------------------------------------------------
    def _temporal(self, state: GenState, start: int, count: int,
                  inputs: tp.Callable[[int, int], torch.Tensor], return_inputs: bool) -> torch.Tensor | None:
        """Temporal layers over `count` positions from `start`, chunk by chunk, writing the ring."""
        kv = state.lm
        capacity = kv.keys[0].shape[2]
        window = capacity if self.gen.options.exact_window else capacity - 1  # keys a step sees
        cfg = self.lm.cfg
        kept = []
        for a in range(0, count, self.chunk):
            b = min(count, a + self.chunk)
            x = inputs(a, b)  # [B, T, dim]
            if return_inputs:
                kept.append(x)
            self._chunk(kv, x, start + a, capacity, window, cfg)
        kv.offset.add_(count)
        if return_inputs:
            return torch.cat(kept, dim=1) if kept else None
        return None

    def _chunk(self, kv, x: torch.Tensor, q0: int, capacity: int, window: int, cfg: LMConfig) -> None:
        B, T, _ = x.shape
        dev = x.device
        pos_q = torch.arange(q0, q0 + T, device=dev)
        rope = rope_tables(pos_q.float(), cfg.dim // cfg.num_heads, cfg.max_period)
        layers = self.lm.transformer.layers
        if q0 + T <= capacity:
            # Not wrapped: slot = position, so the layers write and read the ring in place.
            ctx = StepContext(_window_mask(pos_q, torch.arange(q0 + T, device=dev), window, x.dtype), rope,
                              None, q0, q0 + T)
            for i, layer in enumerate(layers):
                x = layer(x, (kv.keys[i], kv.values[i]), ctx)
            return
        # Wrapped: this chunk's keys would overwrite ones its first queries still see. Attend over
        # a copy of those (`old`) followed by the chunk's own keys, then write the ring.
        first = max(0, q0 - window + 1)
        old = q0 - first
        old_slots = torch.arange(first, q0, device=dev) % capacity
        keep = min(T, capacity)  # only the newest `capacity` keys survive in the ring
        new_slots = torch.arange(q0 + T - keep, q0 + T, device=dev) % capacity
        ctx = StepContext(_window_mask(pos_q, torch.arange(first, q0 + T, device=dev), window, x.dtype), rope,
                          None, old, None)
        shape = (B, kv.keys[0].shape[1], old + T, kv.keys[0].shape[3])
        k_tmp, v_tmp = kv.keys[0].new_empty(shape), kv.values[0].new_empty(shape)
        for i, layer in enumerate(layers):
            k_tmp[:, :, :old] = kv.keys[i].index_select(2, old_slots)
            v_tmp[:, :, :old] = kv.values[i].index_select(2, old_slots)
            x = layer(x, (k_tmp, v_tmp), ctx)
            kv.keys[i].index_copy_(2, new_slots, k_tmp[:, :, old + T - keep:])
            kv.values[i].index_copy_(2, new_slots, v_tmp[:, :, old + T - keep:])

    # --- the prompt phases ---------------------------------------------------------------------
    def voice(self, state: GenState, prompt_cfg: PromptConfig, *, mimi=None, voice: VoicePrompt | None = None,
              collect_embeddings: bool = False, progress: tp.Callable[[int], None] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`prompts.run_voice_phase`, batched: on a freshly reset `state`; returns what a `.pt`
        voice file holds with `collect_embeddings` and an audio voice prompt. `progress(frames)`
        follows the Mimi encoding of an audio voice prompt, the slow part."""
        if voice is None:
            return None
        device = state.cache.device
        if voice.embeddings is not None:
            emb = voice.embeddings.to(device=device, dtype=next(self.lm.parameters()).dtype)
            self.embeddings(state, emb.view(1, len(emb), -1).expand(state.cache.shape[0], -1, -1))
            state.cache.copy_(voice.cache.to(device))
            return None
        frames = self._voice_frames(state, prompt_cfg, mimi, voice, progress)
        inputs = self.frames(state, frames, return_inputs=collect_embeddings)
        if collect_embeddings and inputs is not None:
            return inputs[0].view(-1, 1, 1, inputs.shape[-1]).clone(), state.cache.clone()
        return None

    def text(self, state: GenState, prompt_cfg: PromptConfig, text_tokens: tp.Sequence[int], *,
             silence_frames: int = SILENCE_FRAMES) -> None:
        """`prompts.run_text_phases`, batched: silence, the persona prompt's tokens, silence."""
        text = [TEXT_PAD] * silence_frames + [int(t) for t in text_tokens] + [TEXT_PAD] * silence_frames
        if not text:
            return
        B, device = state.cache.shape[0], state.cache.device
        frames = torch.empty(B, self.num_streams, len(text), dtype=torch.long, device=device)
        frames[:, 0] = torch.tensor(text, dtype=torch.long).to(device)
        frames[:, 1:1 + self.n] = _const(prompt_cfg.silence_tokens, device)
        frames[:, 1 + self.n:] = _const(prompt_cfg.sine_tokens, device)
        self.frames(state, frames)

    def prompts(self, state: GenState, prompt_cfg: PromptConfig, *, mimi=None, voice: VoicePrompt | None = None,
                text_tokens: tp.Sequence[int] = (), silence_frames: int = SILENCE_FRAMES,
                collect_embeddings: bool = False, progress: tp.Callable[[int, int], None] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`prompts.run_prompts`, batched: resets `state` and runs every prompt phase."""
        total = voice_phase_steps(voice) + text_phase_steps(text_tokens, silence_frames)
        state.reset()
        collected = self.voice(state, prompt_cfg, mimi=mimi, voice=voice, collect_embeddings=collect_embeddings,
                               progress=None if progress is None else (lambda done: progress(done, total)))
        self.text(state, prompt_cfg, text_tokens, silence_frames=silence_frames)
        if progress is not None:
            progress(total, total)
        return collected

    def voice_file(self, prompt_cfg: PromptConfig, mimi, voice: VoicePrompt,
                   progress: tp.Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What a `.pt` voice file holds for an audio voice prompt, without any transformer pass:
        the voice phase's temporal inputs are embeddings of forced tokens, and its token ring is
        bookkeeping. Needs only a token ring (no KV cache of the context's size)."""
        if voice.frames is None:
            raise ValueError("voice_file needs an audio voice prompt")
        device = self.gen.device
        cache = torch.full((1, self.num_streams, self.ct), UNGENERATED_TOKEN, dtype=torch.long, device=device)
        host = [[False] * self.ct for _ in range(self.num_streams)]
        state = GenState(cache, torch.zeros_like(cache, dtype=torch.bool), host, 0, None, None)
        frames = self._voice_frames(state, prompt_cfg, mimi, voice, progress)
        columns = self._input_columns(state, frames)
        self._advance(state, frames)
        embeddings = torch.cat([self.lm.embed(columns[:, :, a:a + self.chunk])
                                for a in range(0, columns.shape[-1], self.chunk)], dim=1)
        return embeddings[0].view(-1, 1, 1, embeddings.shape[-1]), state.cache.clone()

    def _voice_frames(self, state: GenState, prompt_cfg: PromptConfig, mimi, voice: VoicePrompt,
                      progress: tp.Callable[[int], None] | None = None) -> torch.Tensor:
        if mimi is None:
            raise ValueError("an audio voice prompt needs the Mimi codec")
        device = state.cache.device
        enc = mimi.init_encoder_state(1)
        codes = []
        for frame in voice.frames:  # frame by frame, as the reference (module docstring: not the whole clip)
            x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).to(device).view(1, 1, FRAME_SIZE)
            codes.append(mimi.encode_step(x, enc))
            if progress is not None:
                progress(len(codes))
        B, N = state.cache.shape[0], len(codes)
        frames = torch.empty(B, self.num_streams, N, dtype=torch.long, device=device)
        frames[:, 0] = TEXT_PAD
        frames[:, 1:1 + self.n] = torch.cat(codes, dim=-1) if codes else frames[:, 1:1 + self.n]
        frames[:, 1 + self.n:] = _const(prompt_cfg.sine_tokens, device)
        return frames

    # --- context refresh -----------------------------------------------------------------------
    def refresh(self, state: GenState, prompt: PromptSnapshot, kept: torch.Tensor) -> None:
        """Rebuilds `state` as the post-prompt state followed by the `kept` frames `[B, 17, h]`
        (complete frames, oldest first, e.g. a conversation's most recent ones), then the frame
        in flight, so the next step continues the conversation seamlessly.

        The frame in flight is the one whose delayed streams are not decided yet: its tokens
        known so far (text, first agent codebook, the user's codes) sit ahead in the token ring;
        they are carried over, and what was not forced before is not forced after.
        """
        F, d, B = state.offset, self.gen.delays, state.cache.shape[0]
        cols = [(F - 1 + d[k]) % self.ct for k in range(self.num_streams)]  # the frame in flight, per stream
        index = torch.tensor(cols, dtype=torch.long).to(state.cache.device).view(1, -1, 1).expand(B, -1, 1)
        pending, pending_forced = state.cache.gather(2, index), state.provided.gather(2, index)  # [B, 17, 1]
        pending_host = [state.provided_host[k][c] for k, c in enumerate(cols)]
        prompt.apply(state)
        self.frames(state, torch.cat([kept, pending], dim=2))
        # The frame in flight sits where it sat, relative to the offset, with its forced flags.
        F2 = state.offset
        for k in range(self.num_streams):
            col = (F2 - 1 + d[k]) % self.ct
            state.provided[:, k, col] = pending_forced[:, k, 0]
            state.provided_host[k][col] = pending_host[k]


def _window_mask(pos_q: torch.Tensor, pos_k: torch.Tensor, window: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive bias `[T, S]`: a query sees the keys from `window - 1` positions back to itself."""
    delta = pos_q.view(-1, 1) - pos_k.view(1, -1)
    return torch.where((delta >= 0) & (delta < window), 0.0, float("-inf")).to(dtype)


def _const(tokens: tp.Sequence[int], device) -> torch.Tensor:
    return torch.tensor(list(tokens), dtype=torch.long).to(device).view(1, -1, 1)


def prefill_activation_bytes(cfg: LMConfig, chunk: int = PREFILL_CHUNK, dtype: torch.dtype = torch.bfloat16,
                             positions: int = 0) -> int:
    """An upper bound of the activation memory a prefill of `positions` frames needs, chunk by chunk.

    Per layer at most: the residual stream and its float32 norm (4 x [T, dim] float32), q/k/v
    and their float32 rotation (3 + 6 x [T, dim]), the attention scores and weights over at most
    context + chunk keys (2 x [heads, T, S] float32, if the attention kernel materialises them),
    the bias mask, the gated FFN ([T, 2H] + 2 x [T, H]), and on a wrapped ring the copy of the keys
    and values still seen (3 x [S, dim]: both copies and one gathered layer). Layers run one after
    another, so it grows neither with depth nor with the prefill's length: only with `chunk` and
    the context. The token columns of all positions (int64, a few index tensors of [17, n]) are
    the one part that grows with the length, by 0.8 KB per frame.
    """
    item = torch.empty(0, dtype=dtype).element_size()
    T, S, D = chunk, cfg.context + chunk, cfg.dim
    per_row = 4 * D * 4 + 3 * D * item + 6 * D * 4 + 4 * cfg.hidden_dim * item
    attention = 2 * cfg.num_heads * T * S * 4 + T * S * item
    wrapped_copy = 3 * S * D * item
    columns = 6 * cfg.num_streams * 8 * (positions + cfg.max_delay + 3)
    return T * per_row + attention + wrapped_copy + columns
