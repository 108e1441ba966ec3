"""``/api/pull`` and ``/api/push``: proxied to the registry service, which runs each as a shared job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from corral_common.errors import BadRequest
from corral_common.http import GoJSONResponse, stream_or_error
from corral_common.internal import ProgressEvent, TransferRequest
from corral_common.names import parse_name
from corral_common.schemas import parse_body

from corral_api.deps import Registry, RequestId

router = APIRouter()


async def _relayed(events: AsyncIterator[ProgressEvent]) -> AsyncIterator[dict[str, Any]]:
    """Each event with exactly the fields the registry sent."""
    async for event in events:
        yield event.model_dump(exclude_unset=True)


async def progress_answer(stream: bool, events: AsyncIterator[ProgressEvent]):
    """NDJSON progress, or with ``stream: false`` only the last object (errors keep their status)."""
    if stream:
        return await stream_or_error(_relayed(events))
    last: dict[str, Any] = {}
    async for event in _relayed(events):
        last = event
    return GoJSONResponse(last)


@router.post("/api/pull")
async def pull(request: Request, registry: Registry, rid: RequestId):
    req = parse_body(TransferRequest, await request.body())
    parse_name(req.model_name())
    return await progress_answer(req.stream, registry.pull(req, rid))


@router.post("/api/push")
async def push(request: Request, registry: Registry, rid: RequestId):
    req = parse_body(TransferRequest, await request.body())
    if not req.model_name():
        raise BadRequest("model is required")
    parse_name(req.model_name())
    return await progress_answer(req.stream, registry.push(req, rid))
