"""Web search and fetch on the gateway, proxied to the websearch service.

``/api/web_search`` and ``/api/web_fetch`` have ollama.com's shapes (code written for it only changes
its base URL); ``/api/experimental/...`` are the paths Ollama's own server serves; ``/api/index``
adds pages to the built-in index. The caller's Authorization header is never forwarded.
This router brings its own client (built in its lifespan from CORRAL_WEBSEARCH_URL), so the
gateway's settings need no field for it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from corral_common.env import current_env, env_str
from corral_common.errors import BadRequest
from corral_common.http import JSON_CONTENT_TYPE, stream_or_error

from corral_api.clients import ServiceClient
from corral_api.deps import RequestId

DEFAULT_WEBSEARCH_URL = "http://127.0.0.1:11438"


@dataclass(frozen=True)
class WebSettings:
    """Where the websearch service is."""

    websearch_url: str = DEFAULT_WEBSEARCH_URL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "WebSettings":
        """CORRAL_WEBSEARCH_URL."""
        env = current_env() if environ is None else environ
        return cls(env_str(env, "CORRAL_WEBSEARCH_URL", DEFAULT_WEBSEARCH_URL))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the websearch client with the app and close it after."""
    app.state.websearch = ServiceClient(WebSettings.from_env().websearch_url, "websearch")
    yield
    await app.state.websearch.close()


def _websearch(request: Request) -> ServiceClient:
    return request.app.state.websearch


Websearch = Annotated[ServiceClient, Depends(_websearch)]
router = APIRouter(lifespan=lifespan)


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("missing request body")
    return raw


async def _forward(websearch: ServiceClient, path: str, rid: str, raw: bytes) -> Response:
    response = await websearch.call("POST", path, rid, content=raw)
    return Response(response.content, status_code=response.status_code, media_type=JSON_CONTENT_TYPE)


@router.post("/api/web_search")
@router.post("/api/experimental/web_search")
async def web_search(request: Request, websearch: Websearch, rid: RequestId) -> Response:
    return await _forward(websearch, "/api/web_search", rid, await _body(request))


@router.post("/api/web_fetch")
@router.post("/api/experimental/web_fetch")
async def web_fetch(request: Request, websearch: Websearch, rid: RequestId) -> Response:
    return await _forward(websearch, "/api/web_fetch", rid, await _body(request))


@router.post("/api/index")
async def index(request: Request, websearch: Websearch, rid: RequestId):
    raw = await _body(request)
    if not _wants_stream(raw):
        return await _forward(websearch, "/api/index", rid, raw)
    return await stream_or_error(websearch.stream("/api/index", rid, _json(raw)))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid JSON in request body: {exc}") from None


def _wants_stream(raw: bytes) -> bool:
    body = _json(raw)
    return not (isinstance(body, dict) and body.get("stream") is False)
