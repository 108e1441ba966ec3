"""The /v2 registry protocol: mounted on the registry service and served alone by ``corral registry``."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_registry.v2.errors import install_registry_errors


class ApiVersionHeader:
    """Every /v2 answer names the protocol version, as distribution does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"docker-distribution-api-version", b"registry/2.0"))
            await send(message)

        await self.app(scope, receive, send_with_header)


def mount_v2(app: FastAPI, token_auth: bool = False) -> None:
    """Add the /v2 routes, their error format and header to an app (and the /token relay with token auth)."""
    from corral_registry.v2.routes import realm_router, router

    install_registry_errors(app)
    if token_auth:
        app.include_router(realm_router)
    app.include_router(router)
    app.add_middleware(ApiVersionHeader)
