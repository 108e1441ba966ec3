"""The registry's readiness checks: its databases, the job queue's broker and result backend, its storage."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from corral_common.health import (Check, Probe, blocking, broker_probe, directory_probe, result_backend_probe,
                                  sql_probe)

from corral_registry.settings import RegistrySettings


def storage_probe(driver: Any) -> Probe:
    """The filesystem driver's root is writable; the S3 driver's bucket answers HEAD."""
    root = getattr(driver, "root", None)
    if root is not None:
        return directory_probe(root, writable=True)
    return blocking(lambda: driver.s3.head_bucket(Bucket=driver.config.bucket))


def register_checks(app: FastAPI, settings: RegistrySettings) -> None:
    """Add what this registry runs on to ``app.state.readiness`` (called in lifespan, once built)."""
    readiness = app.state.readiness
    if settings.serve_store:
        readiness.add(Check("database", sql_probe(app.state.db.engine)),
                      Check("broker", broker_probe(app.state.celery)),
                      Check("result_backend", result_backend_probe(app.state.celery)),
                      Check("models_dir", directory_probe(settings.models_dir, writable=True)))
    if settings.serve_v2:
        readiness.add(Check("registry_database", sql_probe(app.state.registry.db.engine)),
                      Check("storage", storage_probe(app.state.registry.driver)))
