"""Requests for remote models go to their host: an ASGI middleware in front of the model routes.

For generate, chat, embed and every /v1 model route, the body's ``model`` is looked at first: a cloud name
(``NAME:TAG-cloud``, ``NAME:cloud``) goes to CORRAL_CLOUD_URL as the name without its suffix; a stored
remote model goes to its ``remote_host`` as its ``remote_model``; anything else goes on to the routes, which
answer as before. The forwarded body is the client's, with only the model name replaced (a stored record's
Modelfile SYSTEM, MESSAGEs and PARAMETERs are applied to native requests, as Ollama does). Streams are
relayed as they arrive; an upstream that fails after the first byte ends the stream with the route's error
event; a client that leaves closes the upstream request, so the host stops generating.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx
from fastapi.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_common.errors import AppError, BadGateway, ClientClosed
from corral_common.http import error_response, ndjson_line
from corral_common.internal import ResolvedModel
from corral_common.jsonio import go_dumps
from corral_common.remote import parse_ref
from corral_common.schemas import decode_json

from corral_api.anthropic import errors as anthropic_errors
from corral_api.openai import errors as openai_errors
from corral_api.openai.sse import event
from corral_api.remote import cloud
from corral_api.remote.client import RemoteClient, Target
from corral_api.remote.known import RESOLVED
from corral_api.remote.runs import RemoteRuns

T = TypeVar("T")
_STREAMED = ("application/x-ndjson", "text/event-stream")


def _native_failure(message: str) -> bytes:
    return ndjson_line({"error": message})


def _openai_failure(message: str) -> bytes:
    return event(openai_errors.error_object(502, message))


def _responses_failure(message: str) -> bytes:
    return b"event: error\n" + event({"type": "error", "code": "server_error", "message": message, "param": None})


def _anthropic_failure(message: str) -> bytes:
    return b"event: error\n" + event(anthropic_errors.error_body(502, message))


@dataclass(frozen=True)
class Route:
    """How a forwarded route is relayed."""

    failure: Callable[[str], bytes] = _native_failure  # the last event of a stream cut short
    overlay: str = ""  # "generate" or "chat": a stored record's Modelfile applies, and chunks name the local model


ROUTES = {
    "/api/generate": Route(overlay="generate"), "/api/chat": Route(overlay="chat"),
    "/api/embed": Route(), "/api/embeddings": Route(),
    "/v1/chat/completions": Route(_openai_failure), "/v1/completions": Route(_openai_failure),
    "/v1/embeddings": Route(_openai_failure), "/v1/responses": Route(_responses_failure),
    "/v1/messages": Route(_anthropic_failure), "/v1/messages/count_tokens": Route(_anthropic_failure),
}
MANAGED = ("/api/pull", "/api/show", "/api/create")  # where a cloud name is handled here (remote/cloud.py)


@dataclass(frozen=True)
class Found:
    """A request for a remote model: where it goes, the name the client used, the decoded body, the record."""

    target: Target
    name: str
    body: dict[str, Any]
    model: ResolvedModel | None = None  # None for a cloud name used without a local record


def error_answer(path: str, exc: AppError) -> Response:
    """A typed error in the route's own shape: Anthropic's, OpenAI's, or Ollama's ``{"error": ...}``."""
    if path.startswith("/v1/messages"):
        return anthropic_errors.error_response(exc)
    if path.startswith("/v1/"):
        return openai_errors.error_response(exc)
    return error_response(exc)


class RemoteModels:
    """Forwards the model routes' requests for remote models, and handles cloud names on pull, show and create;
    every other request passes untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" and scope["method"] == "POST" else ""
        route = ROUTES.get(path)
        if route is None and path not in MANAGED:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:  # a remote model's request (model routes); an answer, a new body or nothing to do (pull/show/create)
            outcome = await (_find(scope, body) if route is not None else _managed(scope, body))
        except AppError as exc:
            outcome = error_answer(path, exc)
        if isinstance(outcome, Found) and route is not None:
            await _forward(scope, receive, send, route, outcome)
        elif isinstance(outcome, Response):
            await outcome(scope, receive, send)
        else:
            await self.app(scope, _replaying(outcome if isinstance(outcome, bytes) else body, receive), send)


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the routes would read it all too)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _decoded(scope: Scope, body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (a compressed or invalid body is the route's to refuse)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return None
    try:
        data = decode_json(body)  # the edge's rules: a lone surrogate or a too-deep body is the route's 400
    except AppError:
        return None
    return data if isinstance(data, dict) else None


async def _find(scope: Scope, body: bytes) -> Found | None:
    """Where the request goes when its model is remote; None when the routes should answer it."""
    data = _decoded(scope, body)
    name = data.get("model") if data is not None else None
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        ref = parse_ref(name)
    except AppError:
        return None
    state = scope["app"].state
    if ref.cloud:
        return Found(cloud.cloud_target(state, ref), name, data)
    try:
        model = await state.registry.resolve(name, scope.get("state", {}).get("request_id", ""))
    except AppError:
        return None  # not stored, or the store is down: the route says so in its own words
    if not model.remote_host:
        scope.setdefault("state", {})[RESOLVED] = (name, model)  # the route uses it instead of asking again
        return None
    return Found(Target(model.remote_host, model.remote_model), name, data, model)



async def _managed(scope: Scope, body: bytes) -> Response | bytes | None:
    """Pull and show of a cloud name are answered here (an answer); create from one gets the cloud as its
    ``remote_host`` (a new body for the route); None when the route answers as it is."""
    data = _decoded(scope, body)
    if data is None:
        return None
    path = scope["path"]
    name = data.get("from") if path == "/api/create" else (data.get("model") or data.get("name"))
    try:
        ref = parse_ref(name) if isinstance(name, str) else None
    except AppError:
        ref = None
    if ref is None or not ref.cloud or (path == "/api/create" and data.get("remote_host")):
        return None
    state, request_id = scope["app"].state, scope.get("state", {}).get("request_id", "")
    if path == "/api/pull":
        return await cloud.pull(state, ref, data, request_id)
    if path == "/api/show":
        return await cloud.show(state, ref, data, request_id)
    return go_dumps(cloud.create_body(state, ref, data)).encode()


def overlaid(route: Route, found: Found) -> dict[str, Any]:
    """The body to send: the remote model's name, and a stored record's Modelfile on native requests (the
    request's own system, template and options win)."""
    body = {**found.body, "model": found.target.model}
    model = found.model
    if model is None or not route.overlay:
        return body
    if model.params:
        body["options"] = {**model.params, **(body.get("options") or {})}
    if route.overlay == "generate":
        if model.template and not body.get("template"):
            body["template"] = model.template
        if model.system and not body.get("system"):
            body["system"] = model.system
    elif body.get("messages"):
        messages = [*model.messages, *body["messages"]]
        first = body["messages"][0]
        if model.system and not (isinstance(first, dict) and first.get("role") == "system"):
            messages.insert(0, {"role": "system", "content": model.system})
        body["messages"] = messages
    return body


async def _forward(scope: Scope, receive: Receive, send: Send, route: Route, found: Found) -> None:
    """Send the request to the remote host and relay its answer (as a stream when it streams)."""
    state = scope["app"].state
    client: RemoteClient = state.remote
    runs: RemoteRuns = state.remote_runs
    details = found.model.details if found.model else {}
    runs.started(found.name, found.target.model, found.target.host, details,
                 found.model.context_length if found.model else None)
    try:
        content = go_dumps(overlaid(route, found)).encode()
        query = scope.get("query_string", b"").decode("latin-1")
        request_id = scope.get("state", {}).get("request_id", "")
        try:
            upstream = await _unless_gone(receive, client.open(found.target, scope["path"], query, content,
                                                               request_id))
            answer = await _answer(scope["path"], route, found, client, upstream, receive)
        except ClientClosed:
            return
        except AppError as exc:
            answer = error_answer(scope["path"], exc)
        await answer(scope, receive, send)
    finally:
        runs.finished(found.name)


async def _unless_gone(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it (closing the upstream request) and raise
    ClientClosed."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientClosed("request canceled")
    finally:
        for pending in (task, gone):
            if not pending.done():
                pending.cancel()
                with suppress(BaseException):
                    await pending


async def _disconnect(receive: Receive) -> None:
    """Return once the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(path: str, route: Route, found: Found, client: RemoteClient, upstream: httpx.Response,
                  receive: Receive) -> Response:
    """The local answer for an upstream response: its refusal, its stream, or its one body."""
    content_type = upstream.headers.get("content-type", "application/json")
    kept = {k: v for k, v in upstream.headers.items() if k in ("content-type", "retry-after")}
    if upstream.status_code < 300 and content_type.startswith(_STREAMED):
        relabel = _relabeler(route, found)
        relay = _sse(upstream, route.failure, found.target) if content_type.startswith("text/event-stream") \
            else _ndjson(upstream, route.failure, found.target, relabel)
        return StreamingResponse(relay, status_code=upstream.status_code, headers=kept)
    body = await _body(upstream, receive, found.target)
    if upstream.status_code == 401 or 300 <= upstream.status_code < 400:
        return error_answer(path, client.refusal(found.target, upstream, body))
    if upstream.status_code < 300:
        body = _relabeled_body(body, _relabeler(route, found))
    return Response(body, status_code=upstream.status_code, headers=kept)


async def _body(upstream: httpx.Response, receive: Receive, target: Target) -> bytes:
    """A whole upstream body (a non-streamed answer or a refusal); 502 if the host stops answering."""
    try:
        return await _unless_gone(receive, upstream.aread())
    except httpx.HTTPError as exc:
        raise BadGateway(f"remote model host {target.host} stopped answering: {exc}") from None
    finally:
        await upstream.aclose()


Relabel = Callable[[dict[str, Any]], dict[str, Any]] | None


def _relabeler(route: Route, found: Found) -> Relabel:
    """For a stored record on native generate/chat: chunks say the local name, ``remote_model`` and
    ``remote_host`` (Ollama's ChatResponse/GenerateResponse fields); None otherwise (relayed as sent)."""
    if not route.overlay or found.model is None:
        return None
    head = {"model": found.name, "remote_model": found.target.model, "remote_host": found.target.host}

    def relabel(chunk: dict[str, Any]) -> dict[str, Any]:
        if "error" in chunk:
            return chunk
        return {**head, **{k: v for k, v in chunk.items() if k not in head}}

    return relabel


def _relabeled_line(line: str, relabel: Relabel) -> bytes:
    if relabel is not None:
        with suppress(ValueError):
            chunk = json.loads(line)
            if isinstance(chunk, dict):
                return ndjson_line(relabel(chunk))
    return line.encode() + b"\n"


def _relabeled_body(body: bytes, relabel: Relabel) -> bytes:
    if relabel is None:
        return body
    return _relabeled_line(body.decode("utf-8", "replace").strip(), relabel).rstrip(b"\n")


def _stopped(target: Target, exc: Exception) -> str:
    return f"remote model host {target.host} stopped answering: {exc or type(exc).__name__}"


async def _closed(upstream: httpx.Response) -> None:
    """Close the upstream response even while being cancelled (a client that left must close it)."""
    with anyio.CancelScope(shield=True):
        await upstream.aclose()


async def _ndjson(upstream: httpx.Response, failure: Callable[[str], bytes], target: Target,
                  relabel: Relabel) -> AsyncIterator[bytes]:
    """NDJSON lines as they arrive; a host that fails mid-stream ends it with an error line."""
    try:
        async for line in upstream.aiter_lines():
            if line.strip():
                yield _relabeled_line(line, relabel)
    except httpx.HTTPError as exc:
        yield failure(_stopped(target, exc))
    finally:
        await _closed(upstream)


async def _sse(upstream: httpx.Response, failure: Callable[[str], bytes], target: Target) -> AsyncIterator[bytes]:
    """Server-sent events as they arrive, one whole event at a time; a host that fails mid-stream ends it with
    the route's error event."""
    lines: list[str] = []
    try:
        async for line in upstream.aiter_lines():
            lines.append(line)
            if not line:
                yield "\n".join(lines).encode() + b"\n"
                lines = []
        if lines:
            yield "\n".join(lines).encode() + b"\n\n"
    except httpx.HTTPError as exc:
        yield failure(_stopped(target, exc))
    finally:
        await _closed(upstream)
