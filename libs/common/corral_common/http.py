"""ASGI pieces every service shares: request ids, access log, error handler, NDJSON streams."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from corral_common.errors import AppError
from corral_common.jsonio import go_dumps
from corral_common.logs import REQUEST_ID_HEADER, get_logger

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
log = get_logger("corral.http")


class GoJSONResponse(JSONResponse):
    """JSON response with Ollama's content type and Go-compatible escaping."""

    media_type = JSON_CONTENT_TYPE

    def render(self, content: object) -> bytes:
        return go_dumps(content).encode()


def error_response(exc: AppError) -> GoJSONResponse:
    """The ``{"error": ...}`` body with the error's status."""
    return GoJSONResponse(exc.body(), status_code=exc.status)


def install_error_handler(app: FastAPI) -> None:
    """One handler per app that serialises typed errors."""

    async def handle(_request: Request, exc: AppError) -> GoJSONResponse:
        return error_response(exc)

    app.add_exception_handler(AppError, handle)  # type: ignore[arg-type]


def ndjson_line(obj: object) -> bytes:
    """One NDJSON line."""
    return go_dumps(obj).encode() + b"\n"


async def ndjson_body(events: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    """Serialise a stream of dicts; an error after the first byte becomes a final error line."""
    try:
        async for event in events:
            yield ndjson_line(event)
    except AppError as exc:
        yield ndjson_line(exc.body())


async def stream_or_error(events: AsyncIterator[dict]) -> StreamingResponse | GoJSONResponse:
    """Start an NDJSON stream only once the first event is known, so early errors keep their status."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        return StreamingResponse(iter(()), media_type=NDJSON_CONTENT_TYPE)
    except AppError as exc:
        return error_response(exc)

    async def chained() -> AsyncIterator[dict]:
        yield first
        async for event in events:
            yield event

    return StreamingResponse(ndjson_body(chained()), media_type=NDJSON_CONTENT_TYPE)


class RequestContextMiddleware:
    """Bind a request id (taken from the caller or made here) and log one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get(REQUEST_ID_HEADER.lower()) or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                log.info("request", method=scope["method"], path=scope["path"],
                         status=status_holder["status"],
                         duration_ms=round((time.perf_counter() - started) * 1000, 1))


def request_id_of(request: Request) -> str:
    """The id bound by RequestContextMiddleware, forwarded to other services."""
    return getattr(request.state, "request_id", "") or ""


def service_app(title: str, lifespan=None) -> FastAPI:
    """A service app with the shared error handler, request-id middleware and ``GET /health``."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handler(app)
    app.add_middleware(RequestContextMiddleware)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
