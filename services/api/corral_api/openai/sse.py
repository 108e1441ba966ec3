"""Server-sent events for /v1 streams: ``data: <json>`` events, ``data: [DONE]`` last; the Responses API
names each event (``event: <type>``) and has no ``[DONE]``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from corral_common import http

from corral_common.errors import AppError
from corral_common.jsonio import go_dumps

from corral_api.openai.errors import OpenAIJSONResponse, error_object, error_response

SSE_CONTENT_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"


def event(obj: Any) -> bytes:
    """One SSE event carrying a JSON object."""
    return b"data: " + go_dumps(obj).encode() + b"\n\n"


async def body(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Events, then ``[DONE]``; an error after the first byte is a final error event and no ``[DONE]``."""
    async with aclosing(events):
        try:
            async for obj in events:
                yield event(obj)
        except AppError as exc:
            yield event(error_object(exc.status, exc.message))
            return
    yield DONE


async def stream_or_error(events: AsyncIterator[dict[str, Any]], request: Request | None = None) -> Response:
    """Start the SSE stream only once the first event is known, so early errors keep their HTTP status."""
    return await http.stream_or_error(events, request, SSE_CONTENT_TYPE, body, error_response)


def named_event(obj: dict[str, Any]) -> bytes:
    """One Responses API event: ``event: <type>`` then its JSON."""
    return b"event: " + obj["type"].encode() + b"\n" + event(obj)


async def named_body(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Named events; the source ends itself with response.completed or response.failed."""
    async with aclosing(events):
        async for obj in events:
            yield named_event(obj)


async def named_stream_or_error(events: AsyncIterator[dict[str, Any]], request: Request | None = None,
                                error: Callable[[AppError], Response] = error_response) -> Response:
    """A stream of named events (Responses, Anthropic), started once the first event is known, so early errors
    keep their status (in ``error``'s shape)."""
    return await http.stream_or_error(events, request, SSE_CONTENT_TYPE, named_body, error)
