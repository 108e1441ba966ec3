"""Internal model-store routes the gateway calls (same bodies as Ollama's public API)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from corral_common.errors import NotFound
from corral_common.http import GoJSONResponse, service_ndjson_body, stream_or_error
from corral_common.internal import TransferRequest
from corral_common.schemas import CopyRequest, CreateRequest, DeleteRequest, NamedRequest, ShowRequest, parse_body

from corral_registry import service
from corral_registry.deps import Jobs, Policy, Store

router = APIRouter(prefix="/store")


@router.get("/models")
async def list_models(store: Store) -> GoJSONResponse:
    return GoJSONResponse(await asyncio.to_thread(service.list_models, store))


@router.post("/show")
async def show(request: Request, store: Store) -> GoJSONResponse:
    req = parse_body(ShowRequest, await request.body())
    return GoJSONResponse(await asyncio.to_thread(service.show, store, req))


@router.post("/resolve")
async def resolve(request: Request, store: Store) -> GoJSONResponse:
    req = parse_body(NamedRequest, await request.body())
    resolved = await asyncio.to_thread(service.resolve, store, req)
    return GoJSONResponse(resolved.model_dump(mode="json"))


@router.post("/copy")
async def copy(request: Request, store: Store) -> Response:
    await asyncio.to_thread(service.copy, store, parse_body(CopyRequest, await request.body()))
    return Response(status_code=200)


@router.post("/delete")
async def delete(request: Request, store: Store) -> Response:
    await asyncio.to_thread(service.delete, store, parse_body(DeleteRequest, await request.body()))
    return Response(status_code=200)


@router.head("/blobs/{digest}")
async def head_blob(digest: str, store: Store) -> Response:
    parsed = service.parse_digest(digest)
    if not store.has_blob(parsed):
        raise NotFound(f'blob "{parsed}" not found')
    return Response(status_code=200)


@router.post("/blobs/{digest}")
async def upload_blob(digest: str, request: Request, store: Store) -> Response:
    parsed = service.parse_digest(digest)
    created = await store.write_blob(parsed, request.stream())
    return Response(status_code=201 if created else 200)


@router.post("/create")
async def create(request: Request, store: Store, jobs: Jobs):
    req = parse_body(CreateRequest, await request.body())
    return await stream_or_error(service.create(store, jobs, req), body=service_ndjson_body)


@router.post("/pull")
async def pull(request: Request, jobs: Jobs, policy: Policy):
    req = parse_body(TransferRequest, await request.body())
    return await stream_or_error(service.pull(jobs, policy, req), body=service_ndjson_body)


@router.post("/push")
async def push(request: Request, store: Store, jobs: Jobs, policy: Policy):
    req = parse_body(TransferRequest, await request.body())
    return await stream_or_error(service.push(store, jobs, policy, req), body=service_ndjson_body)
