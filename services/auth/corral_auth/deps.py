"""Dependencies of the auth routes: the runtime built in lifespan, and the authenticated caller.

The gateway forwards the caller's address and original request URI in ``X-Corral-Client`` and
``X-Corral-Original-URI`` (this service is internal; it is never exposed on its own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from corral_common.http import from_state

from corral_auth import scopes
from corral_auth.gate import Attempt
from corral_auth.identity import Credential, Principal
from corral_auth.runtime import AuthRuntime

CLIENT_HEADER = "x-corral-client"
URI_HEADER = "x-corral-original-uri"
URL_HEADER = "x-corral-original-url"


_runtime = from_state("auth")


def original_uri(request: Request) -> str:
    """The request URI the client signed (path and query)."""
    uri = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return request.headers.get(URI_HEADER) or uri


def client_of(request: Request) -> str:
    """The caller's address as the gateway saw it."""
    return request.headers.get(CLIENT_HEADER) or (request.client.host if request.client else "unknown")


def credential_of(request: Request) -> Credential:
    """The credential the request presents."""
    return Credential.from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"),
                                   request.method, original_uri(request))


def _require(scope: str | None) -> Callable[[Request], Principal]:
    def dependency(request: Request) -> Principal:
        runtime = _runtime(request)
        attempt = Attempt(credential_of(request), client_of(request), scope, request.url.path)
        return runtime.gate.authenticate(attempt)

    return dependency


Runtime = Annotated[AuthRuntime, Depends(_runtime)]
Caller = Annotated[Principal, Depends(_require(None))]
AdminCaller = Annotated[Principal, Depends(_require(scopes.ADMIN))]
WriterCaller = Annotated[Principal, Depends(_require(scopes.MODELS_WRITE))]
ClientAddress = Annotated[str, Depends(client_of)]
