"""DNS-rebinding and cross-site request guards that run before any handler (security.md OLL-1, OLL-2).

Starlette's CORSMiddleware only hides responses from the browser; a cross-site ``text/plain`` POST
would still run. Here a disallowed Origin is refused with 403 before the request reaches a route.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_HEADERS = ("Authorization, Content-Type, User-Agent, Accept, X-Requested-With, OpenAI-Beta, "
                   "x-stainless-arch, x-stainless-async, x-stainless-custom-poll-interval, "
                   "x-stainless-helper-method, x-stainless-lang, x-stainless-os, x-stainless-package-version, "
                   "x-stainless-poll-helper, x-stainless-retry-count, x-stainless-runtime, "
                   "x-stainless-runtime-version, x-stainless-timeout")
ALLOWED_METHODS = "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"


def _host_only(host_header: str) -> str:
    """The host part of a Host header (``[::1]:11434`` → ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def host_allowed(host_header: str) -> bool:
    """Ollama's allowedHostsMiddleware rule for a loopback listener."""
    host = _host_only(host_header).lower().rstrip(".")
    if not host or host == "localhost" or host == socket.gethostname().lower():
        return True
    if host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local


def origin_allowed(origin: str, host_header: str, patterns: Iterable[str]) -> bool:
    """An origin is allowed if it is this server itself or matches an OLLAMA_ORIGINS pattern."""
    if origin in (f"http://{host_header}", f"https://{host_header}"):
        return True
    return any(p == "*" or fnmatch.fnmatchcase(origin, p) for p in patterns)


async def _refuse(send: Send, status: int = 403) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


class EdgeGuard:
    """Host check (loopback listeners only) and Origin allow-list with CORS headers."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...], loopback: bool) -> None:
        self.app, self.origins, self.loopback = app, origins, loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host, origin = headers.get("host", ""), headers.get("origin")
        if self.loopback and not host_allowed(host):
            await _refuse(send)
            return
        if origin is None:
            if scope["method"] == "OPTIONS":
                await _refuse(send, 204)
                return
            await self.app(scope, receive, send)
            return
        if not origin_allowed(origin, host, self.origins):
            await _refuse(send)
            return
        await self._with_cors(scope, receive, send, origin)

    async def _with_cors(self, scope: Scope, receive: Receive, send: Send, origin: str) -> None:
        """Answer preflights; echo the allowed origin on every other response."""
        allow = "*" if "*" in self.origins else origin
        cors = [(b"access-control-allow-origin", allow.encode()), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            extra = [(b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                     (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                     (b"access-control-max-age", b"43200"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": cors + extra})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(cors)
            await send(message)

        await self.app(scope, receive, send_with_cors)
