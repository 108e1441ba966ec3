"""``/api/pull`` and ``/api/push``: proxied to the registry service, which runs each as a shared job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from corral_common.errors import BadRequest
from corral_common.http import GoJSONResponse, stream_or_error
from corral_common.schemas import NamedRequest, parse_body

from corral_api.deps import RequestId, Store
from corral_api.models import check_name

router = APIRouter()


class TransferRequest(NamedRequest):
    """Ollama's ``api.PullRequest`` / ``api.PushRequest``; ``username``/``password`` are ignored, as there."""

    insecure: bool = False
    stream: bool = True
    username: str = ""
    password: str = ""


async def _answer(req: TransferRequest, events: AsyncIterator[dict[str, Any]]):
    """NDJSON progress, or with ``stream: false`` only the last object (errors keep their status)."""
    if req.stream:
        return await stream_or_error(events)
    last: dict[str, Any] = {}
    async for event in events:
        last = event
    return GoJSONResponse(last)


@router.post("/api/pull")
async def pull(request: Request, store: Store, rid: RequestId):
    req = parse_body(TransferRequest, await request.body())
    check_name(req.model_name())
    body = {"model": req.model_name(), "insecure": req.insecure}
    return await _answer(req, store.stream("/store/pull", rid, body))


@router.post("/api/push")
async def push(request: Request, store: Store, rid: RequestId):
    req = parse_body(TransferRequest, await request.body())
    if not req.model_name():
        raise BadRequest("model is required")
    check_name(req.model_name())
    body = {"model": req.model_name(), "insecure": req.insecure}
    return await _answer(req, store.stream("/store/push", rid, body))
