"""Model management and embeddings through the registry and inference services."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from corral_common.digest import parse_digest as parse_digest  # routes call models.parse_digest
from corral_common.errors import BadRequest, NotFound
from corral_common.internal import EmbedInputs, EmbedOutput, ProgressEvent
from corral_common.jsonio import local_time
from corral_common.names import parse_name
from corral_common.schemas import CreateRequest, EmbeddingsRequest, EmbedRequest

from corral_api.running import Call, keep_alive_ns, merged_options, resolve


async def ps(call: Call, remote: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """GET /api/ps from the inference service's loaded runners, then the remote models in use (``remote``)."""
    loaded = await call.inference.ps(call.request_id)
    rows = [{"name": r["name"], "model": r["name"], "size": r["size"], "digest": r["digest"],
             "details": r["details"], "expires_at": local_time(r["expires_at"]), "size_vram": r["size_vram"],
             "context_length": r["context_length"]} for r in loaded["models"] if not r.get("embedding")]
    return {"models": rows + (remote or [])}


def create(call: Call, req: CreateRequest) -> AsyncIterator[ProgressEvent]:
    """POST /api/create: names checked here, the rest by the registry before it queues the job."""
    if not req.model_name():
        raise BadRequest("model is required")
    parse_name(req.model_name())
    return call.registry.create(req, call.request_id)


def _inputs(value: Any) -> list[str]:
    """``input`` as a list of strings; anything else is ``invalid input type``."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadRequest("invalid input type")


def normalize(vector: list[float], dimensions: int | None) -> list[float]:
    """Cut to ``dimensions`` (if smaller) and L2-normalise; NaN/Inf is a 400."""
    if dimensions and 0 < dimensions < len(vector):
        vector = vector[:dimensions]
    if any(not math.isfinite(v) for v in vector):
        raise BadRequest("embedding contains NaN or Inf values")
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else vector


async def _embed_call(call: Call, model_text: str, inputs: list[str], truncate: bool,
                      options: dict[str, Any] | None, keep_alive: Any) -> EmbedOutput:
    """Resolve the model and have inference embed the inputs (raw vectors)."""
    model = await resolve(call, model_text, f'model "{model_text}" not found, try pulling it first')
    body = EmbedInputs(model=model.engine_model(), options=merged_options(model, options),
                       keep_alive_ns=keep_alive_ns(keep_alive), inputs=inputs, truncate=truncate)
    return await call.inference.embed(body, call.request_id)


async def embed(call: Call, req: EmbedRequest) -> dict[str, Any]:
    """POST /api/embed: L2-normalised vectors."""
    if not req.model:
        raise NotFound("model '' not found")
    if req.dimensions is not None and req.dimensions < 0:
        raise BadRequest("dimensions must be a positive number")
    inputs = _inputs(req.input)
    result = await _embed_call(call, req.model, inputs, req.truncate, req.options, req.keep_alive)
    out: dict[str, Any] = {"model": req.model,
                           "embeddings": [normalize(v, req.dimensions) for v in result.embeddings]}
    if not inputs:
        return out
    for key in ("total_duration", "load_duration", "prompt_eval_count"):
        if getattr(result, key):
            out[key] = getattr(result, key)
    return out


async def embeddings(call: Call, req: EmbeddingsRequest) -> dict[str, Any]:
    """POST /api/embeddings (legacy): one raw vector, not normalised."""
    if not req.model:
        raise BadRequest("model is required")
    inputs = [req.prompt] if req.prompt else []
    result = await _embed_call(call, req.model, inputs, True, req.options, req.keep_alive)
    return {"embedding": result.embeddings[0] if result.embeddings else []}
