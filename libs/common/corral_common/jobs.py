"""One runner for every background job (create, pull, push, quantize, the websearch crawl).

Worker side: ``run_job`` runs a job's body in a Celery task with a ``JobReporter``, which publishes
the events so far plus a heartbeat (``beat``) through the result backend, and returns the final
state (every event, and the typed error that ended the job, if any).

Caller side: ``JobRunner.run`` sends the task, or joins the running one for the same key
(single flight, recorded in a ``JobStore``), and yields its events in order, each change once.
A job no worker picks up within ``pickup_timeout`` is a 503. The worker's beats are the job's lease:
a worker silent for ``stale_seconds`` (killed, or its machine gone) gets the job queued again, at most
``max_restarts`` times, then the caller's stream ends with a 503 that names the job. The caller does
the redelivery, not the broker: a killed worker's message comes back only on AMQP at once, on Redis
after its visibility timeout (an hour) and on the filesystem broker never. Each message expires when
its pickup time is up, so one the broker hands out late (or again) never runs a job twice.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from corral_common import tracing
from corral_common.env import env_int, env_positive
from corral_common.errors import AppError, InternalError, ServiceUnavailable, from_status
from corral_common.internal import ProgressEvent
from corral_common.logs import get_logger, request_context

if TYPE_CHECKING:  # only in annotations: settings that name JobTiming (serve reads them) do not load Celery
    from celery import Celery, Task

log = get_logger("corral.jobs")
PROGRESS_STATE = "PROGRESS"
TERMINAL = ("SUCCESS", "FAILURE", "REVOKED")
JOB_REQUEST_ID = "request_id"  # the task header that carries the queuing request's id into the worker's log lines
Publish = Callable[[dict[str, Any]], None]
Event = ProgressEvent | Mapping[str, Any]  # a progress line, or a service's own event already in wire form
LEASE_ENV = "CORRAL_JOB_LEASE_SECONDS"
LEASE_ENV_OLD = "CORRAL_TRANSFER_STALE_SECONDS"  # its earlier, registry-only name
REDELIVERIES_ENV = "CORRAL_JOB_REDELIVERIES"
_DOING = {"create": "creating the model", "pull": "pulling the model", "push": "pushing the model",
          "crawl": "crawling the site", "index": "indexing the page"}


# --- worker side ---------------------------------------------------------------------------------------
class JobReporter:
    """A job's events, published with a heartbeat; thread-safe (transfer parts report from their own threads).

    Byte counts change hundreds of times a second, so ``progress`` keeps one event per digest, updated in
    place, and publishes at most every ``min_interval`` (at once when the digest completes).
    """

    def __init__(self, publish: Publish | None = None, min_interval: float = 0.1, heartbeat: float = 1.0) -> None:
        self._publish, self._min_interval = publish, min_interval
        self.events: list[dict[str, Any]] = []
        self._digests: dict[str, tuple[int, int]] = {}  # digest -> (index in events, completed)
        self._lock = threading.Lock()
        self._published_at = 0.0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if publish is not None:
            self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat,), daemon=True, name="job-beat")
            self._beat.start()

    def emit(self, event: Event) -> None:
        """Record one event and publish at once."""
        wire = event.wire() if isinstance(event, ProgressEvent) else dict(event)
        with self._lock:
            self.events.append(wire)
        self.flush()

    def status(self, text: str) -> None:
        """A status line such as ``pulling manifest``."""
        self.emit(ProgressEvent(status=text))

    def progress(self, status: str, digest: str, total: int, completed: int) -> None:
        """Bytes done for one digest (never going backwards, never past ``total``)."""
        with self._lock:
            index, done = self._digests.get(digest, (len(self.events), 0))
            done = max(done, min(completed, total))
            event = ProgressEvent(status=status, digest=digest, total=total, completed=done).wire()
            if index == len(self.events):
                self.events.append(event)
            else:
                self.events[index] = event
            self._digests[digest] = (index, done)
            due = done >= total or time.monotonic() - self._published_at >= self._min_interval
        if due:
            self.flush()

    def snapshot(self) -> dict[str, Any]:
        """What callers see: a copy of every event and the time of this beat."""
        with self._lock:
            return {"events": [dict(e) for e in self.events], "beat": time.time()}

    def flush(self) -> None:
        """Publish the current state."""
        if self._publish is None:
            return
        meta = self.snapshot()
        with self._lock:
            self._published_at = time.monotonic()
        self._publish(meta)

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - a failed beat must not kill the job
                continue

    def close(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)

    def result(self, error: AppError | None = None) -> dict[str, Any]:
        """The task's return value: every event, plus the error that ended the job."""
        out = self.snapshot()
        if error is not None:
            out["error"] = {"status": error.status, "message": error.message}
        return out


def task_publisher(task: Task) -> Publish | None:
    """Publish into a running task's result state (None when the task is called directly)."""
    task_id = task.request.id
    if not task_id:
        return None
    return lambda meta: task.backend.store_result(task_id, meta, PROGRESS_STATE)


def run_job(task: Task, body: Callable[[JobReporter], None], heartbeat: float = 1.0) -> dict[str, Any]:
    """Run a job's body in a Celery task; an exception becomes the job's typed error, never a task failure."""
    reporter = JobReporter(task_publisher(task), heartbeat=heartbeat)
    error: AppError | None = None
    carrier = _task_headers(task)
    try:
        with tracing.job_span(task.name, carrier), request_context(carrier.get("request_id", "")):
            body(reporter)
    except AppError as exc:
        error = exc
    except Exception as exc:  # noqa: BLE001 - reported to the caller as a 500, logged with its traceback
        log.exception("job crashed", task=task.name)
        error = InternalError(str(exc) or type(exc).__name__)
    finally:
        reporter.close()
    if error is not None:
        log.info("job failed", task=task.name, status=error.status, error=error.message)
    return reporter.result(error)


def _task_headers(task: Task) -> dict[str, Any]:
    """The headers a job was sent with: its trace context and the request id of the call that queued it."""
    request = task.request
    headers = dict(getattr(request, "headers", None) or {})
    for name in (tracing.TRACEPARENT, tracing.TRACESTATE, JOB_REQUEST_ID):
        if getattr(request, name, None):  # Celery puts a message's custom headers on the task's request too
            headers.setdefault(name, getattr(request, name))
    return headers


def _job_headers(task_name: str) -> dict[str, str]:
    """What travels with a job besides its arguments: the trace context and the caller's request id."""
    headers = tracing.job_headers(task_name)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        headers[JOB_REQUEST_ID] = request_id
    return headers


# --- single flight ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRecord:
    """The job that runs for a key: its id, its current Celery task and when that task was queued."""

    job_id: str
    task_id: str
    queued_at: float = 0.0  # seconds since the epoch


class JobStore(Protocol):
    """Where single-flight jobs are recorded, so callers of one key (in any process) join one job."""

    def active(self, kind: str, key: str) -> JobRecord | None:
        """The newest unfinished job for a key."""

    def start(self, kind: str, key: str, job_id: str, task_id: str) -> None:
        """Record a job that is being queued."""

    def retask(self, job_id: str, task_id: str) -> None:
        """The job was queued again under a new task."""

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """The job ended: ``succeeded``, ``failed`` or ``abandoned``."""


class MemoryJobStore:
    """A JobStore in this process's memory (tests, and services without a database)."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[str, str, JobRecord]] = {}  # job id -> (kind, key, record)
        self.finished: dict[str, tuple[str, str | None]] = {}
        self._lock = threading.Lock()

    def active(self, kind: str, key: str) -> JobRecord | None:
        """The newest unfinished job for a key."""
        with self._lock:
            found = [r for k, n, r in self._jobs.values() if (k, n) == (kind, key)]
        return max(found, key=lambda r: r.queued_at, default=None)

    def start(self, kind: str, key: str, job_id: str, task_id: str) -> None:
        """Record a job that is being queued."""
        with self._lock:
            self._jobs[job_id] = (kind, key, JobRecord(job_id, task_id, time.time()))

    def retask(self, job_id: str, task_id: str) -> None:
        """The job was queued again under a new task."""
        with self._lock:
            if job_id in self._jobs:
                kind, key, _ = self._jobs[job_id]
                self._jobs[job_id] = (kind, key, JobRecord(job_id, task_id, time.time()))

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """The job ended."""
        with self._lock:
            self._jobs.pop(job_id, None)
            self.finished[job_id] = (state, error)


# --- caller side --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobTiming:
    """How long a caller waits for a worker to take a job, how long a worker may stay silent (the lease),
    and how often a job whose worker died is queued again before the caller is told."""

    pickup_timeout: float = 120.0
    stale_seconds: float = 30.0
    max_restarts: int = 3
    poll_seconds: float = 0.1

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **defaults: Any) -> "JobTiming":
        """CORRAL_JOB_LEASE_SECONDS (or its older name CORRAL_TRANSFER_STALE_SECONDS), CORRAL_JOB_REDELIVERIES."""
        base = cls(**defaults)
        lease = env_positive(environ, LEASE_ENV, env_positive(environ, LEASE_ENV_OLD, base.stale_seconds))
        return replace(base, stale_seconds=lease,
                       max_restarts=max(0, env_int(environ, REDELIVERIES_ENV, base.max_restarts)))


@dataclass
class _Follow:
    """The caller's view of one job while it relays it."""

    kind: str
    task_name: str
    request: dict[str, Any]
    job_id: str
    task_id: str
    restarts: int = 0
    last_info: Any = None
    queued_at: float = 0.0
    changed_at: float = 0.0

    def requeued(self, task_id: str) -> None:
        self.task_id, self.last_info = task_id, None
        self.queued_at = self.changed_at = time.monotonic()


class JobObserver(Protocol):
    """Told when a caller starts following a job and how it ended (metrics)."""

    def started(self, kind: str) -> None:
        """A caller began following a job of this kind."""

    def finished(self, kind: str, outcome: str, seconds: float) -> None:
        """It ended: ``success``, ``failed`` or ``cancelled`` (the caller left), after ``seconds``."""


class JobRunner:
    """Sends, shares and follows jobs of one service's worker."""

    def __init__(self, celery: Celery, store: JobStore | None = None, timing: JobTiming = JobTiming(),
                 worker: str = "registry", observer: JobObserver | None = None) -> None:
        self.celery, self.timing, self.worker, self.observer = celery, timing, worker, observer
        self.store: JobStore = store if store is not None else MemoryJobStore()
        self._lock = asyncio.Lock()

    async def run(self, kind: str, task_name: str, request: Mapping[str, Any],
                  key: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Start the job (or, with a ``key``, join the one running for it) and yield its events until it ends."""
        started, outcome = time.monotonic(), "cancelled"
        if self.observer is not None:
            self.observer.started(kind)
        try:
            async with aclosing(self._run(kind, task_name, request, key)) as events:
                async for event in events:
                    yield event
            outcome = "success"
        except AppError:
            outcome = "failed"
            raise
        finally:
            if self.observer is not None:
                self.observer.finished(kind, outcome, time.monotonic() - started)

    async def _run(self, kind: str, task_name: str, request: Mapping[str, Any],
                   key: str | None) -> AsyncIterator[dict[str, Any]]:
        args = dict(request)
        async with self._lock:
            job_id, task_id = await asyncio.to_thread(self._attach, kind, task_name, args, key)
        now = time.monotonic()
        follow = _Follow(kind, task_name, args, job_id, task_id, queued_at=now, changed_at=now)
        async for event in self._follow(follow):
            yield event

    def _attach(self, kind: str, task_name: str, request: dict[str, Any], key: str | None) -> tuple[str, str]:
        """The job to follow: the key's live one, or a new one just sent."""
        if key is not None:
            job = self.store.active(kind, key)
            if job is not None and self._alive(job):
                log.info("joining running job", kind=kind, key=key, job=job.job_id)
                return job.job_id, job.task_id
            if job is not None:
                self.store.finish(job.job_id, "abandoned")
        job_id, task_id = uuid.uuid4().hex, uuid.uuid4().hex
        if key is not None:  # a job without a key is this caller's alone: nothing to record
            self.store.start(kind, key, job_id, task_id)
        self._send(task_name, task_id, job_id, request)
        return job_id, task_id

    def _meta(self, task_id: str) -> tuple[str, Any]:
        """A task's state and info from the result backend."""
        meta = self.celery.backend.get_task_meta(task_id)
        return meta.get("status", "PENDING"), meta.get("result")

    def _alive(self, job: JobRecord) -> bool:
        """Whether a recorded job is worth joining: queued recently, or its worker beating."""
        state, info = self._meta(job.task_id)
        if state in TERMINAL:
            return False
        if state == "PENDING":
            return time.time() - job.queued_at < self.timing.pickup_timeout
        beat = info.get("beat") if isinstance(info, dict) else None
        return beat is None or time.time() - float(beat) < self.timing.stale_seconds

    def _send(self, task_name: str, task_id: str, job_id: str, request: dict[str, Any]) -> None:
        try:
            self.celery.send_task(task_name, kwargs={"request": request}, task_id=task_id,
                                  headers=_job_headers(task_name), expires=self.timing.pickup_timeout)
        except Exception as exc:  # broker down: say so instead of hanging
            self.store.finish(job_id, "failed", str(exc))
            raise ServiceUnavailable(f"task queue unavailable: {exc}") from None

    def _requeue(self, follow: _Follow) -> str:
        task_id = uuid.uuid4().hex
        self.store.retask(follow.job_id, task_id)
        self._send(follow.task_name, task_id, follow.job_id, follow.request)
        return task_id

    async def _follow(self, follow: _Follow) -> AsyncIterator[dict[str, Any]]:
        """Relay each new or changed event; end with the job's outcome."""
        sent: dict[int, dict[str, Any]] = {}
        while True:
            state, info = await asyncio.to_thread(self._meta, follow.task_id)
            for index, event in enumerate(info.get("events", []) if isinstance(info, dict) else []):
                if sent.get(index) != event:
                    sent[index] = event
                    yield event
            if state in TERMINAL:
                await asyncio.to_thread(self._finish, follow, state, info)
                return
            await self._watch(follow, state, info)
            await asyncio.sleep(self.timing.poll_seconds)

    def _finish(self, follow: _Follow, state: str, info: Any) -> None:
        """Record the outcome and raise the job's error, typed."""
        error = info.get("error") if state == "SUCCESS" and isinstance(info, dict) else None
        if state == "SUCCESS" and not error:
            self.store.finish(follow.job_id, "succeeded")
            return
        failure = from_status(error["status"], error["message"]) if error else InternalError(f"job failed: {info}")
        self.store.finish(follow.job_id, "failed", failure.message)
        raise failure

    async def _watch(self, follow: _Follow, state: str, info: Any) -> None:
        """A job nobody took is a 503; a worker gone silent gets the job queued again (a bounded number of times)."""
        now = time.monotonic()
        if info != follow.last_info:
            follow.last_info, follow.changed_at = info, now
        if state == "PENDING" and now - follow.queued_at > self.timing.pickup_timeout:
            self.celery.AsyncResult(follow.task_id).revoke()
            await self._give_up(follow, f"no worker picked up the job: is the {self.worker} worker running?")
        if state != "PENDING" and now - follow.changed_at > self.timing.stale_seconds:
            if follow.restarts >= self.timing.max_restarts:
                await self._give_up(follow, self.worker_lost(follow.kind))
            follow.restarts += 1
            log.warning("job worker went silent, queueing the job again", job=follow.job_id, task=follow.task_id,
                        restart=follow.restarts)
            follow.requeued(await asyncio.to_thread(self._requeue, follow))

    def worker_lost(self, kind: str) -> str:
        """What the caller reads when the job's worker died once too often."""
        doing = _DOING.get(kind, f"running the {kind} job")
        return f"the {self.worker} worker stopped while {doing}; try again"

    async def _give_up(self, follow: _Follow, message: str) -> None:
        log.warning("job given up", job=follow.job_id, task=follow.task_id, kind=follow.kind, error=message)
        await asyncio.to_thread(self.store.finish, follow.job_id, "failed", message)
        raise ServiceUnavailable(message)
