"""Continuous batching on llama.cpp: several sequences of one model decode together in one batch.

One OS thread per loaded model runs the step loop (performance.md: llama.cpp calls must not hop
between threads). Each request gets a slot (a sequence id in a KV cache sized slots × num_ctx, one stream per slot)
and its own sampler chain inside llama.cpp. New requests join between steps; finished or
cancelled ones leave without stalling the rest; a slot keeps its KV so the next request with the
same prefix (the next chat turn, a shared system prompt) skips evaluating it.
"""

from __future__ import annotations

import ctypes
import queue
import random
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from corral_common.errors import AppError, BadRequest, InternalError
from corral_common.logs import get_logger
from corral_common.text import HARMONY_TOKENS

from corral_inference import kvcache, lora, zeropages
from corral_inference.completion import (ContextOverflow, Generation, certainly_longer, common_prefix, job_tokens,
                                        reusable_prefix)
from corral_inference.engine import CompletionJob, Emit, LoadSpec, Occupancy
from corral_inference.llama_engine import (_gpu_layers, _threads, grammar_sampler, longest_piece, model_kv_shape,
                                           offloaded_bytes)
from corral_inference.vision import EncodedPrompt, ImageEncoder, LlamaMtmd, PromptFeed, VisionContext

log = get_logger("corral.inference.batch")
MIROSTAT_M = 100  # tokens Mirostat 1.0 estimates s_hat from (llama.cpp's common default)
# A free slot whose cached tokens cover at least this share of a new prompt is reused for it; below that the
# least recently used slot is taken, so a chat header shared by every prompt does not send each new conversation
# to the slot holding the last one (llama-server's --slot-prompt-similarity, 0.1 there too).
SLOT_PROMPT_SIMILARITY = 0.1


@dataclass
class _Slot:
    """One sequence of the batch: its KV contents and the request occupying it, if any."""

    seq_id: int
    kv: list[int] = field(default_factory=list)
    gen: Generation | None = None
    sampler: internals.LlamaSampler | None = None
    pending: list[int] = field(default_factory=list, metadata={"doc": "prompt tokens not yet decoded"})
    feed: PromptFeed | None = field(default=None, metadata={"doc": "an image prompt not yet decoded"})
    used: int = field(default=0, metadata={"doc": "when a request last took the slot (0: never)"})


def pick_slot(free: list[_Slot], tokens: list[int]) -> _Slot:
    """The free slot for a prompt: the one sharing its longest prefix when that covers a real part of it
    (the next turn of a chat, a long shared system prompt), else the least recently used (an empty one first)."""
    best = max(free, key=lambda s: (common_prefix(s.kv, tokens), -s.used))
    if common_prefix(best.kv, tokens) >= SLOT_PROMPT_SIMILARITY * len(tokens):
        return best
    return min(free, key=lambda s: s.used)


class _Queued(NamedTuple):
    """A request waiting for a slot; an image request comes with its prompt encoded, or the error that ends it."""

    job: CompletionJob
    emit: Emit
    encoded: EncodedPrompt | AppError | None = None

    @property
    def prompt(self) -> EncodedPrompt | None:
        """The encoded image prompt, if the request has one."""
        return self.encoded if isinstance(self.encoded, EncodedPrompt) else None

    def discard(self) -> None:
        """Free what encoding the request's images holds."""
        if self.prompt is not None:
            self.prompt.close()


class BatchEngine:
    """A model with ``slots`` parallel sequences, driven by its own step-loop thread."""

    def __init__(self, spec: LoadSpec, slots: int, lazy_kv: bool = True) -> None:
        self.spec, self.slots = spec, max(1, slots)
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = _gpu_layers(spec.num_gpu)
        model_params.main_gpu, model_params.use_mmap = spec.main_gpu, spec.use_mmap
        self.model = internals.LlamaModel(path_model=spec.model_path, params=model_params, verbose=False)
        # The cache llama.cpp cleared to zeros stays out of RAM until written (corral_inference.zeropages).
        with zeropages.released_after(lazy_kv and zeropages.supported(llama_cpp.llama_supports_gpu_offload())) \
                as self.released:
            self.ctx = internals.LlamaContext(model=self.model, params=self._context_params(spec), verbose=False)
        self.adapters = lora.apply_adapters(self.model, self.ctx, spec.adapters)
        self.batch = internals.LlamaBatch(n_tokens=spec.num_batch, embd=0, n_seq_max=self.slots)
        self.n_vocab = self.model.n_vocab()
        self.shown_controls = self._harmony_tokens()
        self.seqs = [_Slot(i) for i in range(self.slots)]
        self.taken = 0  # requests given a slot so far: each slot's ``used`` is a value of it
        self.stopped: AppError | None = None  # set if the loop's thread ever ends other than by close()
        self.decodes = 0  # llama_decode calls so far (the image encoder logs how many ran while it worked)
        self.vision: VisionContext | None = (VisionContext.load(LlamaMtmd(), spec.projector, self.model.model,
                                                                _threads(spec.num_thread)) if spec.projector else None)
        self.inbox: queue.Queue[_Queued | None] = queue.Queue()
        self.waiting: list[_Queued] = []
        # Images are encoded on a thread of their own: the loop keeps stepping the other slots meanwhile.
        self.encoder = (ImageEncoder(self._encode, self._encoded, lambda: self.decodes)
                        if self.vision is not None else None)
        self.thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self.thread.start()

    def _context_params(self, spec: LoadSpec) -> Any:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = spec.num_ctx * self.slots
        params.n_batch = params.n_ubatch = spec.num_batch
        params.n_threads = params.n_threads_batch = _threads(spec.num_thread)
        params.n_seq_max = self.slots
        # Logits for one token per slot a step (the one it samples), as llama-server asks: left at 0, llama.cpp
        # reserves logits for every token of a batch, a 96 MiB compute buffer for smollm2's 49k vocabulary.
        params.n_outputs_max, params.n_outputs_max_per_seq = self.slots, 1
        # One KV stream of num_ctx cells per slot: attention for a sequence then reads only its own
        # cells, not every slot's (a unified cache makes each token attend over all slots' used range).
        params.kv_unified = False
        params.no_perf = True
        kind = kvcache.kv_type(spec.kv_cache_type)
        params.type_k = params.type_v = kind.ggml_type
        params.flash_attn_type = kvcache.flash_attn_type(kind, spec.flash_attention)
        return params

    # --- the Engine protocol ---------------------------------------------------------------
    def submit(self, job: CompletionJob, emit: Emit) -> None:
        """Queue a request (one with images is encoded first); events arrive through emit on the loop thread."""
        if job.images and self.encoder is not None:
            self.encoder.submit(job, emit)
        else:
            self._queue(_Queued(job, emit))

    def _queue(self, item: _Queued) -> None:
        self.inbox.put(item)
        if self.stopped is not None:  # the loop is gone: answer now rather than leave the request waiting
            self._fail_inbox(self.stopped)

    def embed(self, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
        """A generation runner does not embed (embedding requests load the model in embedding mode)."""
        raise BadRequest("this model was loaded for generation and does not support embeddings")

    def tokenize(self, text: str) -> list[int]:
        """The prompt's tokens, as ``_start`` makes them (the vocabulary is read-only, so any thread may ask)."""
        return list(self.model.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def size_bytes(self) -> int:
        """Weights plus the KV cache of every slot, in the cache's type."""
        return int(self.model.size()) + self.kv_bytes()

    def kv_bytes(self) -> int:
        """The KV cache llama.cpp holds: every cell of the context in the type it was loaded with."""
        cells = llama_cpp.llama_n_ctx(self.ctx.ctx)
        return model_kv_shape(self.model).bytes(kvcache.kv_type(self.spec.kv_cache_type), cells)

    def unbacked_bytes(self) -> int:
        """The part of size_bytes not in RAM yet: cache pages handed back and not written since (any thread)."""
        return self.released.unbacked()

    def vram_bytes(self) -> int:
        """Bytes offloaded to a GPU (all of it when layers are offloaded; CPU builds report 0)."""
        return offloaded_bytes(self.size_bytes(), self.spec.num_gpu)

    def occupancy(self, active: int) -> Occupancy:
        """Slots in use, requests waiting for one, KV cells used and held (read from any thread: a snapshot)."""
        seqs, encoding = list(self.seqs), self.encoder.pending() if self.encoder else 0
        return Occupancy(busy=sum(1 for slot in seqs if slot.gen is not None),
                         waiting=len(self.waiting) + self.inbox.qsize() + encoding,
                         kv_used=sum(len(slot.kv) for slot in seqs), kv_total=self.spec.num_ctx * self.slots)

    def close(self) -> None:
        """Stop the loop (queued and running requests end with an error) and free the model."""
        if self.encoder is not None:
            self.encoder.close()  # before the loop: what it hands back still reaches the loop, and ends there
        self.inbox.put(None)
        self.thread.join(30)
        with zeropages.GUARD.shared():  # not while a model being loaded reads new memory: this unmaps some
            if self.vision is not None:
                self.vision.close()
            self.batch.close()
            self.ctx.close()
            lora.free_adapters(self.adapters)
            self.model.close()

    # --- the step loop (runs on self.thread only) ----------------------------------------
    def _loop(self) -> None:
        try:
            self._steps()
        except BaseException as exc:  # a bug outside one request's step: nobody is left to answer the others
            log.error("batch loop stopped", error=repr(exc))
            self.stopped = InternalError(f"inference failed: the model's batch loop stopped ({exc!r}); "
                                         "unload the model or restart corral")
            self._fail_all(self.stopped)
            self._fail_inbox(self.stopped)

    def _fail_inbox(self, error: AppError) -> None:
        """End every request still queued for the loop (and any submitted after it stopped)."""
        while True:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.discard()
                item.emit(error)

    def _steps(self) -> None:
        while True:
            if not self._intake(block=not self._busy() and not self.waiting):
                return
            try:
                with zeropages.GUARD.shared():  # a model being loaded hands back its zero pages between steps
                    self._drop_cancelled()
                    self._admit()
                    if self._busy():
                        self._step()
            except Exception as exc:  # the loop must outlive any one request's failure
                log.error("batch step failed", error=repr(exc))
                self._fail_all(InternalError(f"inference failed: {exc}"))

    def _busy(self) -> bool:
        return any(slot.gen for slot in self.seqs)

    def _intake(self, block: bool) -> bool:
        """Move submitted jobs into the waiting line; False when asked to stop."""
        try:
            item = self.inbox.get(block=block)
            while True:
                if item is None:
                    self._fail_all(InternalError("model unloaded"))
                    return False
                if isinstance(item.encoded, AppError):
                    item.emit(item.encoded)  # an image that does not decode ends its request before it waits
                else:
                    self.waiting.append(item)
                item = self.inbox.get_nowait()
        except queue.Empty:
            return True

    def _admit(self) -> None:
        """Give waiting jobs free slots, in arrival order, preferring the slot with the longest cached prefix."""
        while self.waiting:
            free = [slot for slot in self.seqs if slot.gen is None]
            if not free:
                return
            queued = self.waiting.pop(0)
            job, emit = queued.job, queued.emit
            if job.cancel.is_set():
                queued.discard()
                continue
            try:
                self._start(job, emit, free, queued.prompt)
            except AppError as exc:  # a prompt that does not fit, an image that does not decode
                emit(exc)
            except Exception as exc:  # a bad grammar or tokenizer failure ends this request only
                emit(InternalError(f"inference failed: {exc}"))

    def _harmony_tokens(self) -> frozenset[int]:
        """The harmony framing tokens this vocabulary has as single (control) tokens: written out as text, so the
        gateway can split gpt-oss output into channels (llama.cpp leaves control tokens out of pieces)."""
        ids = {text: self._tokenize(text.encode(), False) for text in HARMONY_TOKENS}
        if len(ids["<|channel|>"]) != 1 or len(ids["<|message|>"]) != 1:
            return frozenset()  # no harmony vocabulary: control tokens stay out of the text, as before
        return frozenset(found[0] for found in ids.values() if len(found) == 1)

    def _tokenize(self, data: bytes, add_bos: bool) -> list[int]:
        return self.model.tokenize(data, add_bos=add_bos, special=True)

    @cached_property
    def piece_max(self) -> int:
        """The longest token's text in bytes (read once, when a prompt first is long enough to ask)."""
        return longest_piece(self.model)

    def _start(self, job: CompletionJob, emit: Emit, free: list[_Slot], encoded: EncodedPrompt | None = None) -> None:
        if job.images:
            self._start_with_images(job, emit, free[0], encoded)
            return
        tokens, dropped = job_tokens(job, self._tokenize, self.spec.num_ctx, self.n_vocab, lambda: self.piece_max)
        sampler = self._sampler(job)
        slot = pick_slot(free, tokens)
        keep = reusable_prefix(slot.kv, tokens)
        self.ctx.kv_cache_seq_rm(slot.seq_id, keep, -1)
        slot.kv = slot.kv[:keep]
        self._occupy(slot, Generation(job, emit, tokens, keep, self.spec.num_ctx, dropped), sampler, tokens[keep:])

    def _encode(self, job: CompletionJob) -> EncodedPrompt:
        """Tokenize an image prompt and encode its images (on the encoder's thread, never the loop's)."""
        assert self.vision is not None
        if certainly_longer(job.prompt.encode("utf-8"), self.spec.num_ctx, lambda: self.piece_max):
            raise ContextOverflow()  # an image prompt is never truncated: refused before any of it is encoded
        return self.vision.encode(job.prompt, list(job.images))

    def _encoded(self, job: CompletionJob, emit: Emit, result: EncodedPrompt | AppError) -> None:
        """The encoder's result joins the line for a slot (from the encoder's thread)."""
        self._queue(_Queued(job, emit, result))

    def _start_with_images(self, job: CompletionJob, emit: Emit, slot: _Slot, encoded: EncodedPrompt | None) -> None:
        """Put an image prompt the encoder prepared into the slot; the loop decodes it a piece per step.

        The images were encoded off the loop thread; between the pieces (a run of text, one image's embeddings)
        the other slots keep generating."""
        if self.vision is None or encoded is None:
            raise BadRequest("this model has no vision projector")
        try:
            if encoded.positions >= self.spec.num_ctx:
                raise ContextOverflow()
            feed, sampler = self.vision.feed(encoded, slot.seq_id, self.spec.num_batch), self._sampler(job)
        except BaseException:
            encoded.close()
            raise
        self.ctx.kv_cache_seq_rm(slot.seq_id, 0, -1)
        slot.kv = [-1] * encoded.positions  # image positions are never the prefix of a later prompt
        slot.feed = feed
        self._occupy(slot, Generation(job, emit, [], 0, self.spec.num_ctx, image_positions=encoded.positions),
                     sampler, [])

    def _feed_prompts(self) -> None:
        """Decode the next piece of each image prompt going in; one fully in samples its first token."""
        for slot in self.seqs:
            if slot.feed is None or slot.gen is None:
                continue
            try:
                if slot.feed.decode_next(self.ctx.ctx):
                    slot.feed.close()
                    slot.feed = None
                    self._take(slot, -1)  # the prompt's last logits, before the step's decode replaces them
            except AppError as exc:  # this request fails, the others go on
                self._end(slot, exc)
            except Exception as exc:
                self._end(slot, InternalError(f"inference failed: {exc}"))

    def _end(self, slot: _Slot, error: AppError) -> None:
        """End the slot's request with an error."""
        if slot.gen is not None:
            slot.gen.fail(error)
        self._free(slot)

    def _occupy(self, slot: _Slot, gen: Generation, sampler: internals.LlamaSampler, pending: list[int]) -> bool:
        """Put a request in a slot; False if it ended at once (no room to generate)."""
        self.taken += 1
        slot.gen, slot.sampler, slot.pending, slot.used = gen, sampler, pending, self.taken
        if gen.start():
            return True
        self._free(slot)
        return False

    def _free(self, slot: _Slot) -> None:
        """Empty the slot (its KV stays for prefix reuse)."""
        if slot.sampler is not None:
            slot.sampler.close()
        if slot.feed is not None:
            slot.feed.close()
        slot.gen, slot.sampler, slot.pending, slot.feed = None, None, [], None

    def _sampler(self, job: CompletionJob) -> internals.LlamaSampler:
        """The request's own sampler chain inside llama.cpp (Ollama's order of samplers)."""
        s = job.sampling
        grammar = grammar_sampler(self.model, s.grammar) if s.grammar else None  # a 400 before the chain exists
        sampler = internals.LlamaSampler()
        last_n = s.repeat_last_n if s.repeat_last_n >= 0 else self.spec.num_ctx
        sampler.add_penalties(self.n_vocab, last_n, s.repeat_penalty, s.frequency_penalty, s.presence_penalty)
        if grammar is not None:
            llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar)
        if s.temperature <= 0:
            sampler.add_greedy()
            return sampler
        seed = s.seed if s.seed >= 0 else random.getrandbits(31)
        if s.mirostat:  # llama.cpp's common sampler: temperature, then Mirostat picks the token (top-k/p unused)
            sampler.add_temp(s.temperature)
            if s.mirostat == 1:
                sampler.add_mirostat(self.n_vocab, seed, s.mirostat_tau, s.mirostat_eta, MIROSTAT_M)
            else:
                sampler.add_mirostat_v2(seed, s.mirostat_tau, s.mirostat_eta)
            return sampler
        sampler.add_top_k(s.top_k)
        sampler.add_typical(s.typical_p, 1)
        sampler.add_top_p(s.top_p, 1)
        sampler.add_min_p(s.min_p, 1)
        sampler.add_temp(s.temperature)
        sampler.add_dist(seed)
        return sampler

    def _drop_cancelled(self) -> None:
        for slot in self.seqs:
            if slot.gen and slot.gen.end_if_cancelled():
                self._free(slot)

    def _step(self) -> None:
        """One llama_decode over every active slot: one new token per generating slot first, then prompt chunks in
        the budget left (llama-server's order), so a long prompt coming in never holds back the streams already
        generating; it takes a few more steps instead."""
        self._feed_prompts()
        self.batch.reset()
        budget, sampled = self.spec.num_batch, []
        active = [slot for slot in self.seqs if slot.gen is not None and slot.feed is None]
        for slot in sorted(active, key=lambda s: bool(s.pending)):  # stable: generating slots, then prompts
            gen = slot.gen
            if gen is None or budget == 0:
                continue
            feed = slot.pending[:budget] if slot.pending else gen.generated[-1:]
            done_prompt = len(feed) == len(slot.pending) or not slot.pending
            for i, token in enumerate(feed):
                want_logits = done_prompt and i == len(feed) - 1
                self._add(token, len(slot.kv), slot.seq_id, want_logits)
                slot.kv.append(token)
            if slot.pending:
                slot.pending = slot.pending[len(feed):]
            budget -= len(feed)
            if done_prompt:
                sampled.append((slot, self.batch.batch.n_tokens - 1))
        if self.batch.batch.n_tokens == 0:
            return
        try:
            self.ctx.decode(self.batch)
        except Exception as exc:
            self._fail_all(InternalError(f"llama_decode failed: {exc}"))
            return
        self.decodes += 1
        for slot, index in sampled:
            self._take(slot, index)

    def _add(self, token: int, pos: int, seq_id: int, logits: bool) -> None:
        b, j = self.batch.batch, self.batch.batch.n_tokens
        b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, 1, logits
        b.seq_id[j][0] = seq_id
        b.n_tokens += 1

    def _take(self, slot: _Slot, index: int) -> None:
        """Sample the slot's next token and hand it to the request's Generation."""
        gen, sampler = slot.gen, slot.sampler
        assert gen is not None and sampler is not None
        token = sampler.sample(self.ctx, index)
        if llama_cpp.llama_vocab_is_eog(self.model.vocab, token):
            piece, logprobs = None, None
        else:
            piece = self._piece(token, special=token in self.shown_controls)
            logprobs = self._logprobs(index, token, gen.job.top_logprobs) if gen.job.logprobs else None
        if gen.step(token, piece, logprobs):
            self._free(slot)

    def _piece(self, token: int, special: bool) -> bytes:
        """The bytes of one token (llama_token_to_piece, sized by its return value)."""
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.model.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _logprobs(self, index: int, token: int, top_n: int) -> dict[str, Any]:
        logits = np.ctypeslib.as_array(self.ctx.get_logits_ith(index), shape=(self.n_vocab,))
        peak = float(logits.max())
        logp = logits - (peak + np.log(np.exp(logits - peak).sum()))
        item = self._token_logprob(token, float(logp[token]))
        if top_n > 0:
            best = np.argpartition(-logp, top_n)[:top_n]
            item["top_logprobs"] = [self._token_logprob(int(t), float(logp[t])) for t in best[np.argsort(-logp[best])]]
        return item

    def _token_logprob(self, token: int, logprob: float) -> dict[str, Any]:
        piece = self._piece(token, special=True)
        return {"token": piece.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(piece)}

    def _fail_all(self, error: AppError) -> None:
        for slot in self.seqs:
            if slot.gen:
                slot.gen.fail(error)
                self._free(slot)
        for queued in self.waiting:
            queued.discard()
            queued.emit(error)
        self.waiting.clear()
