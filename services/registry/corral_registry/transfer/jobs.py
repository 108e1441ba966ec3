"""Pull and push jobs: queued as Celery tasks, recorded in the DB, relayed to every caller that waits.

Callers of the same model share one job (and so one download). The relay notices a worker that
died mid-transfer (no heartbeat for ``stale_seconds``) and queues the job again: the new task
resumes from the partial files the old one left, and callers keep receiving progress.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from corral_common.errors import InternalError, ServiceUnavailable, from_status
from corral_common.logs import get_logger

from corral_registry.db import Database
from corral_registry.db import queries as q

log = get_logger("corral.registry.jobs")
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")


class TransferJobs:
    """Starts, shares and follows transfer tasks."""

    def __init__(self, celery: Celery, db: Database, stale_seconds: float, pickup_timeout: float = 120.0,
                 poll_seconds: float = 0.1, max_restarts: int = 3) -> None:
        self.celery, self.db = celery, db
        self.stale_seconds, self.pickup_timeout = stale_seconds, pickup_timeout
        self.poll_seconds, self.max_restarts = poll_seconds, max_restarts
        self._lock = asyncio.Lock()

    async def run(self, kind: str, task_name: str, model: str, request: dict[str, Any]) -> AsyncIterator[dict]:
        """Join the running job for this model or start one, and yield its events until it ends."""
        async with self._lock:
            job_id, task_id = await asyncio.to_thread(self._attach, kind, task_name, model, request)
        async for event in self._follow(job_id, task_id, task_name, request):
            yield event

    def _attach(self, kind: str, task_name: str, model: str, request: dict[str, Any]) -> tuple[str, str]:
        with self.db.session() as session:
            job = q.active_job(session, kind, model)
            if job is not None:
                if self._alive(job.task_id, job.updated_at):
                    log.info("joining running transfer", kind=kind, model=model, job=job.id)
                    return job.id, job.task_id
                q.update_job(session, job.id, state="abandoned")
        job_id, task_id = uuid.uuid4().hex, uuid.uuid4().hex
        with self.db.session() as session:
            q.create_job(session, job_id, kind, model, task_id)
        self._send(task_name, task_id, job_id, request)
        return job_id, task_id

    def _alive(self, task_id: str, since: datetime) -> bool:
        """Whether a recorded job's task is still worth joining (queued recently, or beating)."""
        meta = self.celery.backend.get_task_meta(task_id)
        state, info = meta.get("status", "PENDING"), meta.get("result")
        if state in TERMINAL:
            return False
        if state == "PENDING":
            since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
            return (datetime.now(timezone.utc) - since).total_seconds() < self.pickup_timeout
        beat = info.get("beat") if isinstance(info, dict) else None
        return beat is None or time.time() - float(beat) < self.stale_seconds

    def _send(self, task_name: str, task_id: str, job_id: str, request: dict[str, Any]) -> None:
        try:
            self.celery.send_task(task_name, kwargs={"job_id": job_id, "request": request}, task_id=task_id)
        except Exception as exc:  # broker down: say so instead of hanging
            with self.db.session() as session:
                q.update_job(session, job_id, state="failed", error=str(exc))
            raise ServiceUnavailable(f"task queue unavailable: {exc}") from None

    def _requeue(self, job_id: str, task_name: str, request: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex
        with self.db.session() as session:
            q.update_job(session, job_id, task_id=task_id, state="queued")
        self._send(task_name, task_id, job_id, request)
        return task_id

    async def _follow(self, job_id: str, task_id: str, task_name: str, request: dict[str, Any]) -> AsyncIterator[dict]:
        sent: dict[int, dict] = {}
        restarts, last_info = 0, None
        queued_at = changed_at = time.monotonic()
        while True:
            result = AsyncResult(task_id, app=self.celery)
            meta = await asyncio.to_thread(self.celery.backend.get_task_meta, task_id)
            state, info = meta.get("status", "PENDING"), meta.get("result")
            for index, event in enumerate(info.get("events", []) if isinstance(info, dict) else []):
                if sent.get(index) != event:
                    sent[index] = event
                    yield event
            if state == "SUCCESS":
                error = info.get("error") if isinstance(info, dict) else None
                if error:
                    raise from_status(error["status"], error["message"])
                return
            if state in ("FAILURE", "REVOKED"):
                raise InternalError(f"transfer failed: {info}")
            now = time.monotonic()
            if info != last_info:
                last_info, changed_at = info, now
            if state == "PENDING" and now - queued_at > self.pickup_timeout:
                result.revoke()
                await asyncio.to_thread(self._fail, job_id, "no worker picked up the job")
                raise ServiceUnavailable("no worker picked up the job: is the registry worker running?")
            if state != "PENDING" and now - changed_at > self.stale_seconds:
                if restarts >= self.max_restarts:
                    raise ServiceUnavailable("the transfer worker stopped responding")
                restarts += 1
                log.warning("transfer worker went silent, queueing the job again", job=job_id, task=task_id)
                task_id = await asyncio.to_thread(self._requeue, job_id, task_name, request)
                queued_at = changed_at = now
                last_info = None
            await asyncio.sleep(self.poll_seconds)

    def _fail(self, job_id: str, error: str) -> None:
        with self.db.session() as session:
            q.update_job(session, job_id, state="failed", error=error)


def mark_job(db: Database, job_id: str, state: str, error: str | None = None) -> None:
    """The worker's side: running, succeeded or failed."""
    with db.session() as session:
        q.update_job(session, job_id, state=state, error=error)
