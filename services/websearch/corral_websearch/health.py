"""The websearch service's readiness checks: the index database, and the crawl queue's broker and backend."""

from __future__ import annotations

from corral_common.health import Check, Readiness, broker_probe, result_backend_probe, sql_probe
from corral_common.jobs import JobRunner

from corral_websearch.index.store import SqlIndex


def register_checks(readiness: Readiness, index: SqlIndex, jobs: JobRunner | None) -> None:
    """Add the index database and, when jobs are queued, the broker and result backend."""
    readiness.add(Check("database", sql_probe(index.engine)))
    if jobs is not None:
        readiness.add(Check("broker", broker_probe(jobs.celery)),
                      Check("result_backend", result_backend_probe(jobs.celery)))
