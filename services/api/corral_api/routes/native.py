"""Ollama's native /api routes: parse, call one service function, return."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from corral_common.http import GoJSONResponse, stream_or_error, until_disconnected
from corral_common.schemas import (ChatRequest, CopyRequest, CreateRequest, DeleteRequest, EmbeddingsRequest,
                                   EmbedRequest, GenerateRequest, ShowRequest, parse_body)
from corral_common.version import OLLAMA_API_VERSION

from corral_api import models, running
from corral_api.deps import ModelCall, Registry, RemoteInUse, RequestId
from corral_api.routes.registry import progress_answer

Chunks = AsyncIterator[dict[str, Any]]

router = APIRouter()


async def _answer(request: Request, stream: bool, chunks: Chunks,
                  collect: Callable[[Chunks], Awaitable[dict[str, Any]]]) -> Response:
    """NDJSON chunks, or with ``stream: false`` the one object ``collect`` makes of them."""
    if stream:
        return await stream_or_error(chunks, request)
    return GoJSONResponse(await until_disconnected(request, collect(chunks)))


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> GoJSONResponse:
    return GoJSONResponse({"version": OLLAMA_API_VERSION})


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(registry: Registry, rid: RequestId) -> GoJSONResponse:
    return GoJSONResponse(await registry.list_models(rid))


@router.post("/api/show")
async def show(request: Request, registry: Registry, rid: RequestId) -> GoJSONResponse:
    req = parse_body(ShowRequest, await request.body())
    return GoJSONResponse(await registry.show(req, rid))


@router.get("/api/ps")
async def ps(call: ModelCall, remote: RemoteInUse) -> GoJSONResponse:
    return GoJSONResponse(await models.ps(call, remote.rows()))


@router.post("/api/generate")
async def generate(request: Request, call: ModelCall) -> Response:
    req = parse_body(GenerateRequest, await request.body())
    return await _answer(request, req.stream, running.generate(call, req), running.collect_generate)


@router.post("/api/chat")
async def chat(request: Request, call: ModelCall) -> Response:
    req = parse_body(ChatRequest, await request.body())
    return await _answer(request, req.stream, running.chat(call, req), running.collect_chat)


@router.post("/api/embed")
async def embed(request: Request, call: ModelCall) -> GoJSONResponse:
    return GoJSONResponse(await models.embed(call, parse_body(EmbedRequest, await request.body())))


@router.post("/api/embeddings")
async def embeddings(request: Request, call: ModelCall) -> GoJSONResponse:
    return GoJSONResponse(await models.embeddings(call, parse_body(EmbeddingsRequest, await request.body())))


@router.post("/api/create")
async def create(request: Request, call: ModelCall):
    req = parse_body(CreateRequest, await request.body())
    return await progress_answer(req.stream, models.create(call, req))


@router.post("/api/copy")
async def copy(request: Request, registry: Registry, rid: RequestId) -> Response:
    await registry.copy(parse_body(CopyRequest, await request.body()), rid)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request, registry: Registry, rid: RequestId) -> Response:
    req = parse_body(DeleteRequest, await request.body())
    await registry.delete(req.model_name(), rid)
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def head_blob(digest: str, registry: Registry, rid: RequestId) -> Response:
    await registry.blob_exists(models.parse_digest(digest), rid)
    return Response(status_code=200)


@router.post("/api/blobs/{digest}")
async def upload_blob(digest: str, request: Request, registry: Registry, rid: RequestId) -> Response:
    created = await registry.upload_blob(models.parse_digest(digest), request.stream(), rid)
    return Response(status_code=201 if created else 200)
