"""The registry's ``JobStore``: single-flight pull and push jobs in the ``registry_jobs`` table.

Every registry process (and replica) on one database sees the same jobs, so callers of one model
join one transfer wherever they arrive.
"""

from __future__ import annotations

from datetime import datetime, timezone

from corral_common.jobs import JobRecord

from corral_registry.db import queries as q
from corral_registry.db import Database


def _epoch(when: datetime) -> float:
    """SQLite hands timestamps back without a zone: they were stored in UTC."""
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


class DbJobStore:
    """Jobs recorded in the registry database (a ``corral_common.jobs.JobStore``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def active(self, kind: str, key: str) -> JobRecord | None:
        """The newest queued job for a key."""
        with self.db.session() as session:
            job = q.active_job(session, kind, key)
            return None if job is None else JobRecord(job.id, job.task_id, _epoch(job.updated_at))

    def start(self, kind: str, key: str, job_id: str, task_id: str) -> None:
        """Record a job that is being queued."""
        with self.db.session() as session:
            q.create_job(session, job_id, kind, key, task_id)

    def retask(self, job_id: str, task_id: str) -> None:
        """The job was queued again under a new task."""
        with self.db.session() as session:
            q.update_job(session, job_id, task_id=task_id, state="queued")

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """The job ended: succeeded, failed or abandoned."""
        with self.db.session() as session:
            q.update_job(session, job_id, state=state, error=error)
