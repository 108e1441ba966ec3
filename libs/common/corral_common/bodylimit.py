"""Request-body caps by route, enforced before and while the body arrives (issue 18 item 11; security.md OLL-7:
every server-side read has a cap).

A declared ``Content-Length`` over the cap is a 413 before a byte of the body is read; a chunked body is
counted as it arrives and refused at the first chunk past the cap, so no more than the cap is ever buffered.
JSON routes take ``CORRAL_MAX_BODY``; the routes that carry base64 images or batches of inputs (generate,
chat, embed, ``/v1``, inference's ``/run``) take RUN_BODY_FACTOR times that; blob uploads, which are streamed
to storage and verified against their digest, have no cap here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_common.env import env_bytes
from corral_common.errors import PayloadTooLarge
from corral_common.jsonio import go_dumps

DEFAULT_MAX_BODY = 4 << 20
RUN_BODY_FACTOR = 16  # 64 MiB by default: room for a few base64 images
_UNCAPPED = re.compile(r"/(?:api/blobs/|store/blobs/|v2/.+/blobs/uploads)")
_RUN_ROUTES = re.compile(r"/(?:api/(?:generate|chat|embed|embeddings)|v1/.*|run/.*)")


class BodyTooLarge(PayloadTooLarge):
    """A request body over its route's cap."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body too large: this endpoint takes at most {limit} bytes (CORRAL_MAX_BODY "
                         f"sets the limit for JSON requests)")


@dataclass(frozen=True)
class BodyLimits:
    """The cap for JSON request bodies; the run routes take RUN_BODY_FACTOR times as much."""

    json: int = DEFAULT_MAX_BODY

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BodyLimits:
        """``CORRAL_MAX_BODY`` (bytes, or e.g. ``8MiB``); unset or invalid: 4 MiB."""
        return cls(max(1, env_bytes(environ, "CORRAL_MAX_BODY", DEFAULT_MAX_BODY)))

    def limit(self, path: str) -> int | None:
        """The cap for a request path; None where the body is a blob streamed to storage."""
        if _UNCAPPED.match(path):
            return None
        return self.json * RUN_BODY_FACTOR if _RUN_ROUTES.fullmatch(path) else self.json


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, error: BodyTooLarge) -> None:
    """The 413 ``{"error": ...}``; the connection closes, since the rest of the body is never read."""
    body = go_dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuse request bodies over their route's cap (BodyLimits) with 413, buffering no more than the cap."""

    def __init__(self, app: ASGIApp, limits: BodyLimits | None = None) -> None:
        self.app = app
        self.limits = limits or BodyLimits.from_env(os.environ)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.limit(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, BodyTooLarge(limit))
            return
        started, received = False, 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # the route's error handler answers it, or the except below
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if received > limit:  # the rest of the body is never read: the connection cannot go on
                    message.setdefault("headers", []).append((b"connection", b"close"))
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await _refuse(send, exc)
