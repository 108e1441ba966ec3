"""The Celery worker of the registry: model jobs (create, pull, push) and garbage collection.

Run with ``celery -A corral_registry.worker:celery_app worker``. ``worker_app(settings)`` builds the
app with its tasks from explicit settings (the inline worker does that); ``celery_app`` is built from
the environment the first time Celery's command line asks for it, not when this module is imported.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from corral_common.internal import TransferRequest
from corral_common.jobs import JobReporter, run_job
from corral_common.tasks import (CREATE_MODEL_TASK, PULL_MODEL_TASK, PUSH_MODEL_TASK, REGISTRY_GC_TASK, cli_app,
                                 make_celery)

from corral_registry.create import run_create
from corral_registry.settings import RegistrySettings
from corral_registry.store import ModelStore
from corral_registry.transfer.jobs import Direction, run_transfer


def _transfer(settings: RegistrySettings, direction: Direction, request: dict[str, Any], report: JobReporter) -> None:
    """A pull or a push with a registry client of its own."""
    from corral_registry.transfer.client import RegistryClient

    run_transfer(direction, ModelStore(settings.models_dir), lambda: RegistryClient(settings.transfer, settings.home),
                 settings.transfer, TransferRequest.model_validate(request), report)


def _register(app: Celery, settings: RegistrySettings) -> None:
    """The registry's tasks on ``app``, each running with ``settings``."""

    @app.task(name=CREATE_MODEL_TASK, bind=True, shared=False)
    def create_model(self: Task, request: dict[str, Any]) -> dict[str, Any]:
        """Build a model from a validated /api/create request, reporting progress as it goes."""
        return run_job(self, lambda report: run_create(ModelStore(settings.models_dir), request, report.emit))

    @app.task(name=PULL_MODEL_TASK, bind=True, shared=False)
    def pull_model(self: Task, request: dict[str, Any]) -> dict[str, Any]:
        """Pull a model into the local store (idempotent: finished blobs are skipped, parts resume)."""
        return run_job(self, lambda report: _transfer(settings, "pull", request, report))

    @app.task(name=PUSH_MODEL_TASK, bind=True, shared=False)
    def push_model(self: Task, request: dict[str, Any]) -> dict[str, Any]:
        """Push a local model to its registry (idempotent: blobs the registry has are skipped)."""
        return run_job(self, lambda report: _transfer(settings, "push", request, report))

    @app.task(name=REGISTRY_GC_TASK, shared=False)
    def garbage_collect(dry_run: bool = False) -> dict[str, Any]:
        """Delete blobs of the /v2 registry storage that no manifest references (scheduled with celery beat)."""
        from corral_registry.gc import collect_registry

        return collect_registry(settings, dry_run=dry_run).to_json()

    if settings.gc_interval_seconds > 0:
        app.conf.beat_schedule = {"registry garbage collection": {
            "task": REGISTRY_GC_TASK, "schedule": settings.gc_interval_seconds}}


def worker_app(settings: RegistrySettings) -> Celery:
    """The registry's Celery app with its tasks, configured from ``settings``; a worker starting up first
    removes the scratch directories of workers that were killed mid-job (their jobs run again, from the start)."""
    ModelStore(settings.models_dir).sweep_scratch()
    app = make_celery("corral-registry", settings.celery_queue())
    _register(app, settings)
    return app


__getattr__ = cli_app(RegistrySettings.from_env, worker_app, "registry-worker")
