"""The websearch service app: web_search, SSRF-safe web_fetch, and the built-in index's jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from corral_common import tracing
from corral_common.http import service_app
from corral_common.jobs import JobRunner
from corral_common.logs import configure_telemetry

from corral_websearch.components import build_fetcher, build_provider, open_index
from corral_websearch.health import register_checks
from corral_websearch.metrics import WebsearchMetrics
from corral_websearch.net.resolver import Resolver
from corral_websearch.routes import web as web_routes
from corral_websearch.service import WebService
from corral_websearch.settings import WebsearchSettings
from corral_websearch.tasks import make_websearch_celery


def create_app(settings: WebsearchSettings | None = None, resolver: Resolver | None = None,
               with_queue: bool = True) -> FastAPI:
    """Build the websearch app from explicit settings (or the environment)."""
    settings = settings or WebsearchSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_telemetry("websearch", settings.debug, settings.telemetry)
        index = open_index(settings)
        meter = app.state.websearch_metrics
        jobs = JobRunner(make_websearch_celery(settings.celery_queue()), timing=settings.job_timing(),
                         worker="websearch", observer=meter.jobs if meter else None) if with_queue else None
        register_checks(app.state.readiness, index, jobs)
        app.state.service = WebService(settings, build_fetcher(settings, resolver), index,
                                       build_provider(settings, index), jobs, meter)
        yield
        await app.state.service.close()
        tracing.shutdown()

    app = service_app("corral websearch", lifespan)
    app.state.websearch_metrics = WebsearchMetrics(app.state.metrics) if app.state.metrics is not None else None
    app.include_router(web_routes.router)
    return app
