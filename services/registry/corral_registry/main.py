"""Registry service app: the model store over HTTP, plus the Celery app that runs model jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from corral_common.env import current_env
from corral_common.http import service_app
from corral_common.logs import configure_logging
from corral_common.tasks import make_celery

from corral_registry.routes import store as store_routes
from corral_registry.settings import RegistrySettings
from corral_registry.store import ModelStore


def create_app(settings: RegistrySettings | None = None) -> FastAPI:
    """Build the registry app from explicit settings (or the environment)."""
    settings = settings or RegistrySettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("registry", settings.debug)
        app.state.store = ModelStore(settings.models_dir)
        app.state.celery = make_celery("corral-registry", current_env())
        yield

    app = service_app("corral registry", lifespan)
    app.include_router(store_routes.router)
    return app
