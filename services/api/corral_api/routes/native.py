"""Ollama's native /api routes: parse, call one service function, return."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from corral_common.http import GoJSONResponse, stream_or_error, until_disconnected
from corral_common.schemas import (ChatRequest, CopyRequest, CreateRequest, DeleteRequest, EmbeddingsRequest,
                                   EmbedRequest, GenerateRequest, ShowRequest, parse_body)
from corral_common.version import OLLAMA_API_VERSION

from corral_api import models, running
from corral_api.deps import Inference, RequestId, Store
from corral_api.running import Call

router = APIRouter()


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> PlainTextResponse:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> GoJSONResponse:
    return GoJSONResponse({"version": OLLAMA_API_VERSION})


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(store: Store, rid: RequestId) -> GoJSONResponse:
    return GoJSONResponse(await store.json("GET", "/store/models", rid))


@router.post("/api/show")
async def show(request: Request, store: Store, rid: RequestId) -> GoJSONResponse:
    req = parse_body(ShowRequest, await request.body())
    return GoJSONResponse(await store.json("POST", "/store/show", rid, req.model_dump(exclude_none=True)))


@router.get("/api/ps")
async def ps(store: Store, inference: Inference, rid: RequestId) -> GoJSONResponse:
    return GoJSONResponse(await models.ps(Call(store, inference, rid)))


@router.post("/api/generate")
async def generate(request: Request, store: Store, inference: Inference, rid: RequestId):
    req = parse_body(GenerateRequest, await request.body())
    chunks = running.generate(Call(store, inference, rid), req)
    if req.stream:
        return await stream_or_error(chunks, request)
    return GoJSONResponse(await until_disconnected(request, running.collect_generate(chunks)))


@router.post("/api/chat")
async def chat(request: Request, store: Store, inference: Inference, rid: RequestId):
    req = parse_body(ChatRequest, await request.body())
    chunks = running.chat(Call(store, inference, rid), req)
    if req.stream:
        return await stream_or_error(chunks, request)
    return GoJSONResponse(await until_disconnected(request, running.collect_chat(chunks)))


@router.post("/api/embed")
async def embed(request: Request, store: Store, inference: Inference, rid: RequestId) -> GoJSONResponse:
    req = parse_body(EmbedRequest, await request.body())
    return GoJSONResponse(await models.embed(Call(store, inference, rid), req))


@router.post("/api/embeddings")
async def embeddings(request: Request, store: Store, inference: Inference, rid: RequestId) -> GoJSONResponse:
    req = parse_body(EmbeddingsRequest, await request.body())
    return GoJSONResponse(await models.embeddings(Call(store, inference, rid), req))


@router.post("/api/create")
async def create(request: Request, store: Store, inference: Inference, rid: RequestId):
    req = parse_body(CreateRequest, await request.body())
    events = models.create(Call(store, inference, rid), req)
    if req.stream:
        return await stream_or_error(events)
    last = {}
    async for event in events:
        last = event
    return GoJSONResponse(last)


@router.post("/api/copy")
async def copy(request: Request, store: Store, rid: RequestId) -> Response:
    req = parse_body(CopyRequest, await request.body())
    await store.call("POST", "/store/copy", rid, req.model_dump())
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request, store: Store, rid: RequestId) -> Response:
    req = parse_body(DeleteRequest, await request.body())
    await store.call("POST", "/store/delete", rid, {"model": req.model_name()})
    return Response(status_code=200)


@router.head("/api/blobs/{digest}")
async def head_blob(digest: str, store: Store, rid: RequestId) -> Response:
    await store.call("HEAD", f"/store/blobs/{models.parse_digest(digest)}", rid)
    return Response(status_code=200)


@router.post("/api/blobs/{digest}")
async def upload_blob(digest: str, request: Request, store: Store, rid: RequestId) -> Response:
    parsed = models.parse_digest(digest)
    response = await store.call("POST", f"/store/blobs/{parsed}", rid, content=request.stream())
    return Response(status_code=response.status_code)
