"""The public gateway on OLLAMA_HOST: Ollama's native API in front of the corral services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException

from corral_common import tracing
from corral_common.bodylimit import BodyLimitMiddleware
from corral_common.http import (NO_FRAMEWORK_SPANS, RequestContextMiddleware, install_error_handler,
                                install_health)
from corral_common.logs import configure_telemetry
from corral_common.metrics import install_metrics
from corral_common.net import is_loopback_host
from corral_common.shutdown import Shutdown

from corral_api.auth import AuthGate, GatewayAuthSettings
from corral_api.clients import AuthClient, RegistryClient, WebsearchClient
from corral_api.guards import EdgeGuard
from corral_api.health import SERVICES, register_checks
from corral_api.metrics import install_gateway_metrics, watch_lazy_services
from corral_api.nodes import InferenceRouter, split_urls
from corral_api.remote.client import RemoteClient
from corral_api.remote.forward import RemoteModels
from corral_api.remote.runs import RemoteRuns
from corral_api.remote.settings import RemoteSettings
from corral_api.routes import anthropic, keys, metrics, native, openai, registry, web
from corral_api.settings import ApiSettings


def _install_plain_errors(app: FastAPI) -> None:
    """gin's texts for unknown routes and wrong methods."""

    async def http_error(_request: Request, exc: HTTPException) -> PlainTextResponse:
        if exc.status_code == 404:
            return PlainTextResponse("404 page not found", status_code=404)
        if exc.status_code == 405:
            return PlainTextResponse("405 method not allowed", status_code=405)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]


def create_app(settings: ApiSettings | None = None, auth: GatewayAuthSettings | None = None,
               remote: RemoteSettings | None = None) -> FastAPI:
    """Build the gateway from explicit settings (or the environment)."""
    settings = settings or ApiSettings.from_env()
    auth = auth or GatewayAuthSettings.from_env()
    remote = remote or RemoteSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_telemetry("api", settings.debug, settings.telemetry)
        app.state.registry = RegistryClient(settings.registry_url, app.state.shutdown)
        app.state.inference = InferenceRouter.from_setting(settings.inference_url, app.state.shutdown)
        app.state.websearch = WebsearchClient(settings.websearch_url, app.state.shutdown)
        app.state.auth = AuthClient(auth.auth_url)
        app.state.remote, app.state.remote_runs = RemoteClient(remote), RemoteRuns()
        if app.state.metrics is not None:
            watch_lazy_services(app)
        clients = {name: getattr(app.state, name) for name in SERVICES}
        register_checks(app.state.readiness, clients, settings.ready_skip)
        yield
        tracing.shutdown()
        for client in (app.state.auth, app.state.registry, app.state.inference, app.state.websearch, app.state.remote):
            await client.close()

    app = FastAPI(title="corral", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_FRAMEWORK_SPANS)
    app.state.shutdown = Shutdown()  # the server that runs the app (corral_cli.launch) ends its grace period
    install_error_handler(app)
    _install_plain_errors(app)
    install_health(app)
    app.include_router(native.router)
    app.include_router(web.router)
    app.include_router(openai.router)
    app.include_router(anthropic.router)
    app.include_router(registry.router)
    app.include_router(keys.router)
    app.add_middleware(RemoteModels)  # inside the auth gate: a forwarded request was authorized here first
    app.add_middleware(AuthGate, settings=auth)
    app.add_middleware(EdgeGuard, origins=settings.origins, loopback=is_loopback_host(settings.listen.host))
    app.add_middleware(BodyLimitMiddleware)  # outside every other reader of the body
    app.add_middleware(RequestContextMiddleware)
    if install_metrics(app, "api", route=False) is not None:
        install_gateway_metrics(app, {"registry": settings.registry_url,
                                      "inference": split_urls(settings.inference_url)[0],
                                      "websearch": settings.websearch_url, "auth": auth.auth_url})
        app.include_router(metrics.router)
    return app
