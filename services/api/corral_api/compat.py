"""What the compatibility layers (OpenAI, Anthropic) share: a route class that answers typed errors in the
layer's own shape, and the loop that runs a native chat stream through a layer's event converter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import aclosing
from typing import Any, Protocol

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from corral_common.errors import AppError


def error_route(respond: Callable[[AppError], Response]) -> type[APIRoute]:
    """A route class whose typed errors (and FastAPI's validation errors, as 400s) leave through ``respond``."""

    class ErrorRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except AppError as exc:
                    return respond(exc)
                except RequestValidationError as exc:
                    return respond(AppError(str(exc.errors()[0].get("msg", exc)), 400))

            return handle

    return ErrorRoute


class Converter(Protocol):
    """Native chat chunks → a layer's events; ``started`` once the first event is out."""

    started: bool

    def translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The events for one native chunk."""

    def failed(self, exc: AppError) -> dict[str, Any]:
        """The terminal event when generation fails after the stream started."""


async def translated(chunks: AsyncIterator[dict[str, Any]], converter: Converter) -> AsyncIterator[dict[str, Any]]:
    """A whole native stream as events; an error before the first event keeps its HTTP status, one after it
    ends the stream with the converter's failure event."""
    async with aclosing(chunks):
        try:
            async for chunk in chunks:
                for event in converter.translate(chunk):
                    yield event
        except AppError as exc:
            if not converter.started:
                raise
            yield converter.failed(exc)


def prompt_tokens(final: dict[str, Any]) -> tuple[int, int]:
    """The whole prompt and the part of it reused from the cache, from a native final chunk made with
    ``cached=True``: compat usage counts the whole prompt, native ``prompt_eval_count`` only what was evaluated."""
    cached = final.get("cached_tokens", 0)
    return final.get("prompt_eval_count", 0) + cached, cached
