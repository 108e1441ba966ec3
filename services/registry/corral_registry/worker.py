"""The Celery worker of the registry: model jobs (create, pull, push) and garbage collection.

Run with ``celery -A corral_registry.worker:celery_app worker``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Task

from corral_common.env import current_env
from corral_common.errors import AppError, InternalError
from corral_common.logs import configure_logging, get_logger
from corral_common.tasks import (CREATE_MODEL_TASK, PULL_MODEL_TASK, PUSH_MODEL_TASK, REGISTRY_GC_TASK,
                                 ProgressReporter, make_celery)

from corral_registry.create import run_create
from corral_registry.db import Database
from corral_registry.settings import RegistrySettings, inline_worker_enabled
from corral_registry.store import ModelStore

celery_app = make_celery("corral-registry", current_env())
log = get_logger("corral.registry.worker")


@celery_app.task(name=CREATE_MODEL_TASK, bind=True)
def create_model(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Build a model from a validated /api/create request, reporting progress as it goes."""
    settings = RegistrySettings.from_env()
    reporter = ProgressReporter(self)
    error = run_create(ModelStore(settings.models_dir), request, reporter.emit)
    if error is not None:
        log.info("create failed", model=request.get("model") or request.get("name"), error=error.message)
    return reporter.result(error)


@lru_cache(maxsize=4)
def _database(url: str) -> Database:
    """One engine per database URL for the life of the worker process."""
    return Database(url)


def _transfer(task: Task, job_id: str, request: dict[str, Any], run: Any) -> dict[str, Any]:
    """Run a pull or push with heartbeat progress, recording the job's state."""
    from corral_registry.transfer.client import RegistryClient
    from corral_registry.transfer.jobs import mark_job
    from corral_registry.transfer.progress import TransferReporter

    settings = RegistrySettings.from_env()
    db = _database(settings.service_database_url())
    task_id = task.request.id
    reporter = TransferReporter(lambda meta: task.backend.store_result(task_id, meta, "PROGRESS"))
    mark_job(db, job_id, "running")
    try:
        error = run(ModelStore(settings.models_dir), lambda: RegistryClient(settings.transfer, settings.home),
                    settings.transfer, request, reporter)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as a 500, logged with its traceback
        log.exception("transfer crashed", job=job_id)
        error = InternalError(str(exc) or type(exc).__name__)
    finally:
        reporter.close()
    mark_job(db, job_id, "failed" if error else "succeeded", error.message if isinstance(error, AppError) else None)
    if error is not None:
        log.info("transfer failed", job=job_id, model=request.get("model"), error=error.message)
    return reporter.result(error)


@celery_app.task(name=PULL_MODEL_TASK, bind=True)
def pull_model(self: Task, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Pull a model into the local store (idempotent: finished blobs are skipped, parts resume)."""
    from corral_registry.pull import run_pull

    return _transfer(self, job_id, request, run_pull)


@celery_app.task(name=PUSH_MODEL_TASK, bind=True)
def push_model(self: Task, job_id: str, request: dict[str, Any]) -> dict[str, Any]:
    """Push a local model to its registry (idempotent: blobs the registry has are skipped)."""
    from corral_registry.push import run_push

    return _transfer(self, job_id, request, run_push)


@celery_app.task(name=REGISTRY_GC_TASK)
def garbage_collect(dry_run: bool = False) -> dict[str, Any]:
    """Delete blobs of the /v2 registry storage that no manifest references (scheduled with celery beat)."""
    from corral_registry.gc import collect_registry

    report = collect_registry(RegistrySettings.from_env(), dry_run=dry_run)
    return report.to_json()


@celery_app.on_after_configure.connect
def _setup(sender: Any, **_: Any) -> None:
    settings = RegistrySettings.from_env()
    if not inline_worker_enabled(current_env()):  # inline, the registry service has set up its own logging
        configure_logging("registry-worker", settings.debug)
    if settings.gc_interval_seconds > 0:
        sender.add_periodic_task(settings.gc_interval_seconds, garbage_collect.s(), name="registry garbage collection")
