"""Inference operations: load, complete (streamed), embed, unload, ps."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from corral_common.digest import Digest
from corral_common.errors import AppError, BadRequest
from corral_common.gguf import GGUFFile, InvalidGGUF, read_gguf
from corral_common.internal import (CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput, LoadRequest,
                                    LoadResult, TokenizeOutput, TokenizeRequest)
from corral_common.logs import note_request
from corral_common.lru import ByteLRU
from corral_common.store_paths import blob_path

from corral_inference import kvcache
from corral_inference.engine import CompletionJob, Emit, Engine, LoadSpec, Sampling
from corral_inference.kvcache import F16, KvShape
from corral_inference.scheduler import ModelRef, Scheduler
from corral_inference.settings import InferenceSettings
from corral_inference.structured import grammar_for

MIN_CTX = 4
GGUF_CACHE_BYTES = 32 * 1024 * 1024
_GGUF_CACHE: ByteLRU[Path, GGUFFile] = ByteLRU(GGUF_CACHE_BYTES, lambda gguf: gguf.memory)


def _validated_gguf(path: Path) -> GGUFFile:
    """Validate a blob in Python before llama.cpp ever opens it (kept, bounded by size, for the next load)."""
    try:
        return _GGUF_CACHE.get_or_load(path, lambda: read_gguf(path))
    except InvalidGGUF as exc:
        raise BadRequest(str(exc)) from None
    except FileNotFoundError:
        raise BadRequest("model blob is missing from the store") from None


def _meta_int(gguf: GGUFFile, key: str, default: int) -> int:
    value = gguf.metadata.get(f"{gguf.architecture()}.{key}", default)
    if isinstance(value, list):  # per-layer values: take the largest
        value = max(value, default=default)
    return int(value) if isinstance(value, (int, float)) else default


def kv_shape(gguf: GGUFFile) -> KvShape:
    """The KV cache's rows as the model's metadata describes them (per-layer values: the largest)."""
    heads = max(1, _meta_int(gguf, "attention.head_count", 1))
    head_k = _meta_int(gguf, "attention.key_length", _meta_int(gguf, "embedding_length", 0) // heads)
    return KvShape(layers=_meta_int(gguf, "block_count", 0),
                   kv_heads=_meta_int(gguf, "attention.head_count_kv", heads),
                   head_k=head_k, head_v=_meta_int(gguf, "attention.value_length", head_k))


def load_spec(settings: InferenceSettings, req: LoadRequest) -> LoadSpec:
    """Runner options from the request, clamped to what the model was trained for."""
    root = settings.models_dir
    path = blob_path(root, Digest(req.model.model_digest))
    gguf = _validated_gguf(path)
    if gguf.kind() != "model":
        raise BadRequest(f"{req.model.name} is not a runnable model (GGUF type {gguf.kind()})")
    options = req.options
    num_ctx = int(options.get("num_ctx") or settings.context_length)
    trained = gguf.context_length()
    num_ctx = max(MIN_CTX, min(num_ctx, trained) if trained else num_ctx)
    adapters = tuple(str(blob_path(root, Digest(d))) for d in req.model.adapters)
    projector = str(blob_path(root, Digest(req.model.projectors[0]))) if req.model.projectors else ""
    slots = 1 if req.embedding else settings.num_parallel
    shape = kv_shape(gguf)  # an embedding runner keeps llama.cpp's f16 cache; generation takes the server's type
    kind = F16 if req.embedding else kvcache.checked(settings.kv_cache_type, settings.flash_attention, shape)
    return LoadSpec(model_path=str(path), adapters=adapters, projector=projector, num_ctx=num_ctx,
                    num_batch=int(options.get("num_batch", 512)), num_gpu=int(options.get("num_gpu", -1)),
                    main_gpu=int(options.get("main_gpu", 0)), use_mmap=bool(options.get("use_mmap", True)),
                    num_thread=int(options.get("num_thread") or settings.num_thread), embedding=req.embedding,
                    pooling_in_model=f"{gguf.architecture()}.pooling_type" in gguf.metadata,
                    kv_cache_type=kind.name, flash_attention=settings.flash_attention,
                    estimate_bytes=gguf.file_size + shape.bytes(kind, num_ctx * slots))


def model_ref(req: LoadRequest) -> ModelRef:
    """The scheduler's view of the requested model (named on the request's log lines and span)."""
    m = req.model
    note_request(model=m.name)
    return ModelRef(m.name, m.model_digest, m.manifest_digest, m.details, tuple(m.adapters))


async def load(scheduler: Scheduler, settings: InferenceSettings, req: LoadRequest) -> LoadResult:
    """Load (or keep) a model without generating: Ollama's empty-prompt request."""
    started = time.perf_counter_ns()
    async with scheduler.lease(model_ref(req), load_spec(settings, req), req.keep_alive_ns) as runner:
        return LoadResult(load_duration=runner.load_duration_ns, total_duration=time.perf_counter_ns() - started)


class _Relay:
    """Events from the engine's thread to the request's task: a deque the thread appends to and an event it sets
    through the loop (asyncio.Queue's bookkeeping per event was a measurable part of a token's cost)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.items, self.arrived = loop, deque(), asyncio.Event()

    def emit(self, event: CompletionEvent | AppError) -> None:  # the engine's thread
        self.items.append(event)
        self.loop.call_soon_threadsafe(self.arrived.set)

    async def next(self) -> CompletionEvent | AppError:
        while not self.items:
            self.arrived.clear()
            await self.arrived.wait()
        return self.items.popleft()


async def _events(engine: Engine, job: CompletionJob,
                  observe: Callable[[Emit], Emit] | None = None) -> AsyncIterator[CompletionEvent]:
    """Relay the engine's events (sent from its thread); leaving early cancels generation at the next token.

    ``observe`` wraps the engine-side callback (metrics see the final event even when the caller left)."""
    relay = _Relay(asyncio.get_running_loop())
    engine.submit(job, observe(relay.emit) if observe is not None else relay.emit)
    try:
        while True:
            event = await relay.next()
            if isinstance(event, AppError):
                raise event
            yield event
            if event.done:
                return
    finally:
        job.cancel.set()


def image_bytes(req: CompletionRequest) -> tuple[bytes, ...]:
    """The request's images (validated by the gateway); a model without a projector cannot take any."""
    if not req.images:
        return ()
    if not req.model.projectors:
        raise BadRequest(f"{req.model.name} has no vision projector, so it cannot take images")
    try:
        return tuple(base64.b64decode(image, validate=True) for image in req.images)
    except binascii.Error:
        raise BadRequest("an image is not valid base64") from None


async def complete(scheduler: Scheduler, settings: InferenceSettings,
                   req: CompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """Stream text pieces then a final event with Ollama's metrics (durations in ns), as wire dicts."""
    started = time.perf_counter_ns()
    images = image_bytes(req)
    sampling = replace(Sampling.from_options(req.options), grammar=grammar_for(req.format, req.forced_call))
    job = CompletionJob(req.prompt, list(req.context), sampling, logprobs=req.logprobs or req.top_logprobs > 0,
                        top_logprobs=req.top_logprobs, truncate=req.truncate, images=images)
    spec = load_spec(settings, req)
    async with scheduler.lease(model_ref(req), spec, req.keep_alive_ns, exclusive=spec.embedding) as runner:
        load_ns = time.perf_counter_ns() - started
        observe = partial(scheduler.metrics.observed, req.model.name, started) if scheduler.metrics else None
        async with aclosing(_events(runner.engine, job, observe)) as events:
            async for event in events:
                if event.done:
                    event = event.model_copy(update={"load_duration": load_ns,
                                                     "total_duration": time.perf_counter_ns() - started})
                yield event.wire()


async def tokenize(scheduler: Scheduler, settings: InferenceSettings, req: TokenizeRequest) -> TokenizeOutput:
    """The rendered prompt's tokens, from the model loaded as a completion would load it."""
    async with scheduler.lease(model_ref(req), load_spec(settings, req), req.keep_alive_ns) as runner:
        return TokenizeOutput(tokens=await runner.call(runner.engine.tokenize, req.text))


async def embed(scheduler: Scheduler, settings: InferenceSettings, req: EmbedInputs) -> EmbedOutput:
    """Raw (unnormalised) vectors for each input, with token count and timings."""
    started = time.perf_counter_ns()
    async with scheduler.lease(model_ref(req), load_spec(settings, req), req.keep_alive_ns) as runner:
        vectors, count = await runner.call(runner.engine.embed, req.inputs, req.truncate) if req.inputs else ([], 0)
        if scheduler.metrics is not None:
            scheduler.metrics.embedded(req.model.name, count)
        return EmbedOutput(embeddings=vectors, prompt_eval_count=count, load_duration=runner.load_duration_ns,
                           total_duration=time.perf_counter_ns() - started)
