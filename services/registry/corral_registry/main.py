"""Registry service app: the model store over HTTP, the /v2 registry protocol, and the Celery app for jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from corral_common import tracing
from corral_common.http import service_app
from corral_common.jobs import JobRunner
from corral_common.logs import configure_telemetry, get_logger
from corral_common.tasks import make_celery

from corral_registry.db import Database
from corral_registry.db.jobs import DbJobStore
from corral_registry.metrics import RegistryMetrics, install_registry_metrics
from corral_registry.health import register_checks
from corral_registry.routes import store as store_routes
from corral_registry.settings import RegistrySettings
from corral_registry.store import ModelStore
from corral_registry.transfer.remote import HostPolicy

log = get_logger("corral.registry")


def build_registry(settings: RegistrySettings, meter: RegistryMetrics | None = None):
    """The /v2 registry over the configured storage (its failures counted) and database, indexed from what
    storage holds."""
    from corral_registry.storage.factory import make_driver
    from corral_registry.v2.service import Registry

    driver = make_driver(settings.storage)
    registry = Registry(meter.metered(driver) if meter else driver, Database(settings.registry_database_url()),
                        settings.layout_host, settings.storage.redirect)
    log.info("registry storage indexed", driver=registry.driver.name, tags=registry.reconcile())
    return registry


def _start_token_auth(app: FastAPI, settings: RegistrySettings) -> None:
    """With CORRAL_REGISTRY_AUTH_REALM set, every /v2 request needs a token from that auth service."""
    if not settings.token_auth.enabled:
        return
    from corral_registry.v2.tokenauth import KeyCache, TokenRelay, TokenVerifier

    app.state.token_verifier = TokenVerifier(settings.token_auth, KeyCache(settings.token_auth.jwks()))
    app.state.token_relay = TokenRelay(settings.token_auth.realm)
    log.info("registry token auth on", realm=settings.token_auth.realm, service=settings.token_auth.service)


async def _stop_token_auth(app: FastAPI) -> None:
    verifier = getattr(app.state, "token_verifier", None)
    if verifier is not None:
        await verifier.keys.close()
        await app.state.token_relay.close()


def _start_inline_worker(settings: RegistrySettings):
    """CORRAL_REGISTRY_INLINE_WORKER=1 (opt-in, small machines): consume the job queue in this process."""
    if not settings.inline_worker:
        return None
    from corral_registry.inline_worker import InlineWorker
    from corral_registry.worker import worker_app

    worker = InlineWorker(worker_app(settings))
    worker.start()
    return worker


def _start_jobs(app: FastAPI, settings: RegistrySettings) -> None:
    """The model store, its database, and the runner that queues and follows its jobs."""
    app.state.store = ModelStore(settings.models_dir)
    app.state.celery = make_celery("corral-registry", settings.celery_queue())
    app.state.db = Database(settings.service_database_url())
    meter = app.state.registry_metrics
    app.state.jobs = JobRunner(app.state.celery, DbJobStore(app.state.db), settings.job_timing(), worker="registry",
                               observer=meter.jobs if meter else None)
    app.state.policy = HostPolicy(settings.transfer.allow_hosts, settings.transfer.allow_loopback)


def migrate_databases(settings: RegistrySettings | None = None) -> None:
    """Bring this service's databases to their newest schema (what its start does first). ``corral serve`` runs it
    in a process of its own before it starts the service, which then finds nothing to do and never loads Alembic."""
    settings = settings or RegistrySettings.from_env()
    if settings.serve_store:
        Database(settings.service_database_url()).close()
    if settings.serve_v2:
        Database(settings.registry_database_url()).close()


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """Build the registry app from explicit settings (or the environment)."""
    settings = settings or RegistrySettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_telemetry("registry", settings.debug, settings.telemetry)
        app.state.settings = settings
        if settings.serve_store:
            await asyncio.to_thread(_start_jobs, app, settings)
        if settings.serve_v2:
            app.state.registry = await asyncio.to_thread(build_registry, settings, app.state.registry_metrics)
            _start_token_auth(app, settings)
        worker = await asyncio.to_thread(_start_inline_worker, settings) if settings.serve_store else None
        register_checks(app, settings)
        yield
        tracing.shutdown()
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        if settings.serve_store:
            app.state.db.close()
        if settings.serve_v2:
            app.state.registry.db.close()
            await _stop_token_auth(app)

    app = service_app("corral registry", lifespan)
    install_registry_metrics(app)
    if settings.serve_store:
        app.include_router(store_routes.router)
    if settings.serve_v2:
        from corral_registry.v2 import mount_v2

        mount_v2(app, settings.token_auth.enabled)
    return app
