"""Inference service app: the scheduler and llama.cpp engines behind internal HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from corral_common import tracing
from corral_common.http import service_app
from corral_common.logs import configure_telemetry

from corral_inference import zeropages
from corral_inference.engine import LoadSpec
from corral_inference.metrics import install_inference_metrics
from corral_inference.health import register_checks
from corral_inference.routes import run
from corral_inference.scheduler import EngineFactory, Scheduler
from corral_inference.settings import InferenceSettings


def llama_factory(settings: InferenceSettings) -> EngineFactory:
    """Production engines: continuous batching for generation, one context per embedding model.

    Imported lazily so unit tests can run without llama.cpp.
    """

    def make(spec: LoadSpec):
        with zeropages.LOADS:  # one at a time: a new context's zero pages are handed back alone
            if spec.embedding:
                from corral_inference.llama_engine import LlamaEngine

                return LlamaEngine(spec)
            from corral_inference.batch_engine import BatchEngine

            return BatchEngine(spec, settings.num_parallel, settings.lazy_kv)

    return make


def create_app(settings: InferenceSettings | None = None, factory: EngineFactory | None = None) -> FastAPI:
    """Build the inference app; tests pass a fake engine factory."""
    settings = settings or InferenceSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_telemetry("inference", settings.debug, settings.telemetry)
        app.state.settings = settings
        app.state.scheduler = Scheduler(settings, factory or llama_factory(settings),
                                        metrics=app.state.inference_metrics)
        register_checks(app.state.readiness, settings)
        yield
        await app.state.scheduler.close()
        tracing.shutdown()

    app = service_app("corral inference", lifespan)
    install_inference_metrics(app)
    app.include_router(run.router)
    return app
