"""The auth service app: API keys, signin, registry tokens and the gateway's verify endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from corral_common import tracing
from corral_common.http import GoJSONResponse, service_app
from corral_common.logs import configure_telemetry

from corral_auth.errors import Denied
from corral_auth.health import register_checks
from corral_auth.routes import grants, internal, keys, signin, tokens, usage
from corral_auth.runtime import build_runtime
from corral_auth.settings import AuthSettings


def _install_denied_handler(app: FastAPI) -> None:
    """Refusals keep their WWW-Authenticate / Retry-After headers."""

    async def handle(_request: Request, exc: Denied) -> GoJSONResponse:
        return GoJSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    app.add_exception_handler(Denied, handle)  # type: ignore[arg-type]


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    """Build the auth app from explicit settings (or the environment)."""
    settings = settings or AuthSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_telemetry("auth", settings.debug, settings.telemetry)
        app.state.auth = build_runtime(settings)
        register_checks(app.state.readiness, app.state.auth)
        yield
        app.state.auth.close()
        tracing.shutdown()

    app = service_app("corral auth", lifespan)
    _install_denied_handler(app)
    for module in (internal, keys, grants, signin, tokens, usage):
        app.include_router(module.router)
    return app
