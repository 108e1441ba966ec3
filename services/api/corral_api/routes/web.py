"""Web search and fetch on the gateway, proxied to the websearch service.

``/api/web_search`` and ``/api/web_fetch`` have ollama.com's shapes (code written for it only changes
its base URL); ``/api/experimental/...`` are the paths Ollama's own server serves; ``/api/index``
adds pages to the built-in index. The caller's Authorization header is never forwarded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from corral_common.errors import BadRequest
from corral_common.http import JSON_CONTENT_TYPE, stream_or_error
from corral_common.schemas import decode_json

from corral_api.deps import RequestId, Websearch

router = APIRouter()


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("missing request body")
    return raw


def _json_response(content: bytes) -> Response:
    return Response(content, media_type=JSON_CONTENT_TYPE)


@router.post("/api/web_search")
@router.post("/api/experimental/web_search")
async def web_search(request: Request, websearch: Websearch, rid: RequestId) -> Response:
    return _json_response(await websearch.search(await _body(request), rid))


@router.post("/api/web_fetch")
@router.post("/api/experimental/web_fetch")
async def web_fetch(request: Request, websearch: Websearch, rid: RequestId) -> Response:
    return _json_response(await websearch.fetch(await _body(request), rid))


@router.post("/api/index")
async def index(request: Request, websearch: Websearch, rid: RequestId):
    raw = await _body(request)
    if not _wants_stream(raw):
        return _json_response(await websearch.index(raw, rid))
    return await stream_or_error(websearch.index_stream(raw, rid))


def _wants_stream(raw: bytes) -> bool:
    body: Any = decode_json(raw)  # the 400s the websearch service would give (too deep, 1e999, ...), said here
    return not (isinstance(body, dict) and body.get("stream") is False)
