"""ASGI pieces every service shares: request ids, access log, error handler, NDJSON streams."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from functools import partial
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from corral_common.bodylimit import BodyLimitMiddleware
from corral_common.errors import AppError, BadRequest, ClientClosed
from corral_common.jsonio import go_dumps
from corral_common import tracing
from corral_common.health import Readiness
from corral_common.logs import REQUEST_ID_HEADER, get_logger, request_context
from corral_common.memlimit import install_memory_error_handler
from corral_common.metrics import install_metrics

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
NDJSON_CONTENT_TYPE = "application/x-ndjson"
DISCONNECT_POLL_SECONDS = 0.1
T = TypeVar("T")
log = get_logger("corral.http")
NO_FRAMEWORK_SPANS: Any = {"tracing": False}  # RequestContextMiddleware makes each request's span (tracing.py)


class GoJSONResponse(JSONResponse):
    """JSON response with Ollama's content type and Go-compatible escaping."""

    media_type = JSON_CONTENT_TYPE

    def render(self, content: object) -> bytes:
        return go_dumps(content).encode()


def error_response(exc: AppError) -> GoJSONResponse:
    """The ``{"error": ...}`` body with the error's status."""
    return GoJSONResponse(exc.body(), status_code=exc.status)


def install_error_handler(app: FastAPI) -> None:
    """One handler per app that serialises typed errors (and FastAPI's own parameter errors, as 400s)."""

    async def handle(_request: Request, exc: AppError) -> GoJSONResponse:
        return error_response(exc)

    async def invalid(_request: Request, exc: RequestValidationError) -> GoJSONResponse:
        return error_response(invalid_parameter(exc))

    app.add_exception_handler(AppError, handle)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid)  # type: ignore[arg-type]
    install_memory_error_handler(app)


def invalid_parameter(exc: RequestValidationError) -> BadRequest:
    """A query or path parameter FastAPI could not parse, as a 400 naming it (not its 422 ``{"detail": [...]}``)."""
    error = exc.errors()[0]
    where, name = (list(error.get("loc", ())) + ["", ""])[:2]
    return BadRequest(f"invalid {where} parameter '{name}': {error.get('msg', 'invalid value')}")


def ndjson_line(obj: object) -> bytes:
    """One NDJSON line."""
    return go_dumps(obj).encode() + b"\n"


async def ndjson_body(events: AsyncIterator[dict],
                      error_line: Callable[[AppError], dict[str, Any]] = AppError.body) -> AsyncIterator[bytes]:
    """Serialise a stream of dicts; an error after the first byte becomes a final error line.

    The source is closed explicitly when the client goes away, so the work behind it stops too.
    """
    async with aclosing(events):
        try:
            async for event in events:
                yield ndjson_line(event)
        except AppError as exc:
            yield ndjson_line(error_line(exc))


def service_error_line(exc: AppError) -> dict[str, Any]:
    """A service's error line to the gateway: ``{"error", "status"}``, so a failure after the first byte keeps its
    status when the gateway answers without streaming (the gateway's client reads it; clients never see it)."""
    return {**exc.body(), "status": exc.status}


# ``ndjson_body`` for a stream from one service to another (stream_or_error's ``body``): error lines keep the status.
service_ndjson_body = partial(ndjson_body, error_line=service_error_line)


async def _first_event(events: AsyncIterator[dict], request: Request | None) -> dict | None:
    """The first event, or None if the client disconnected while it was being produced."""
    pending = asyncio.ensure_future(anext(events))
    while True:
        done, _ = await asyncio.wait({pending}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return pending.result()
        if request is not None and await request.is_disconnected():
            pending.cancel()
            with suppress(BaseException):
                await pending
            return None


async def stream_or_error(events: AsyncIterator[dict], request: Request | None = None,
                          media_type: str = NDJSON_CONTENT_TYPE,
                          body: Callable[[AsyncIterator[dict]], AsyncIterator[bytes]] = ndjson_body,
                          error: Callable[[AppError], Response] = error_response) -> Response:
    """Start a stream only once the first event is known, so early errors keep their status; a client
    that leaves before then (e.g. during prompt evaluation) cancels the work at once."""
    try:
        first: dict | None = await _first_event(events, request)
        ended = False
    except StopAsyncIteration:
        first, ended = {}, True
    except AppError as exc:
        return error(exc)
    if first is None:
        await events.aclose()
        return Response(status_code=ClientClosed.status)

    async def chained() -> AsyncIterator[dict]:
        async with aclosing(events):
            if ended:
                return
            yield first
            async for event in events:
                yield event

    return StreamingResponse(body(chained()), media_type=media_type)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await work, cancelling it if the client disconnects first (non-streamed responses)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with suppress(BaseException):
                await task
            raise ClientClosed("request canceled")


class RequestContextMiddleware:
    """Bind a request id (taken from the caller or made here), continue its trace, log one line per request."""

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

        with request_context(request_id) as notes, \
                tracing.server_span(f"{scope['method']} {scope['path']}", headers, request_id=request_id) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                _access_line(scope, notes, status_holder["status"], time.perf_counter() - started, span)


def _access_line(scope: Scope, notes: dict[str, Any], status: int, seconds: float, span: Any) -> None:
    """The request's one access-log line (and its span's name and status, when tracing)."""
    route = getattr(scope.get("route"), "path", None) or scope["path"]
    if span is not None:
        span.update_name(f"{scope['method']} {route}")
        span.set_attributes({"http.route": route, "http.response.status_code": status})
    log.info("request", method=scope["method"], route=route, path=scope["path"], status=status,
             duration_ms=round(seconds * 1000, 1), model=notes.get("model"))


def request_id_of(request: Request) -> str:
    """The id bound by RequestContextMiddleware, forwarded to other services."""
    return getattr(request.state, "request_id", "") or ""


def from_state(name: str) -> Callable[[Request], Any]:
    """A dependency that returns ``request.app.state.<name>`` (built in lifespan), for ``Annotated`` aliases."""

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return dependency


def install_health(app: FastAPI) -> Readiness:
    """``GET /healthz`` (the process answers; ``/health`` too) and ``GET /readyz`` (its dependencies answer:
    503 naming each one that is down). The lifespan adds checks to the returned ``app.state.readiness``."""
    app.state.readiness = Readiness()

    @app.get("/healthz")
    @app.get("/health")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> GoJSONResponse:
        report = await request.app.state.readiness.report()
        return GoJSONResponse(report.body(), status_code=200 if report.ready else 503)

    return app.state.readiness


def service_app(title: str, lifespan=None) -> FastAPI:
    """A service app with the shared error handler, request-id and body-cap middleware, ``/healthz`` and
    ``/readyz``."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_FRAMEWORK_SPANS)
    install_error_handler(app)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    install_health(app)
    install_metrics(app, title.removeprefix("corral "))
    return app
