"""The Celery worker of the registry: model jobs (create now; pull, push and quantize reuse the pattern).

Run with ``celery -A corral_registry.worker:celery_app worker``.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from corral_common.env import current_env
from corral_common.logs import configure_logging, get_logger
from corral_common.tasks import CREATE_MODEL_TASK, ProgressReporter, make_celery

from corral_registry.create import run_create
from corral_registry.settings import RegistrySettings
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


@celery_app.on_after_configure.connect
def _setup_logging(**_: Any) -> None:
    configure_logging("registry-worker", RegistrySettings.from_env().debug)
