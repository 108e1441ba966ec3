"""The job runner against a real Celery worker (a thread) on the filesystem broker and SQLite results."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker

from corral_common.errors import NotFound, ServiceUnavailable
from corral_common.internal import ProgressEvent
from corral_common.jobs import JobReporter, JobRunner, JobTiming, MemoryJobStore, run_job
from corral_common.tasks import QueueSettings, make_celery
from corral_common.testing.jobstore_contract import check_job_store


FAST = JobTiming(pickup_timeout=30, stale_seconds=30, max_restarts=3, poll_seconds=0.05)


class Jobs:
    """A Celery app with test tasks, counting how often each ran."""

    def __init__(self, spool: Path) -> None:
        self.app = make_celery("corral-test", QueueSettings(spool))
        self.runs: dict[str, int] = {}
        self.release = threading.Event()  # what a blocked task waits for
        self._lock = threading.Lock()

    def count(self, name: str) -> int:
        with self._lock:
            self.runs[name] = self.runs.get(name, 0) + 1
            return self.runs[name]

    def task(self, name: str, body, heartbeat: float = 1.0) -> None:  # noqa: ANN001
        """Register ``body(report, attempt)`` as a job task."""

        @self.app.task(name=name, bind=True, shared=False)
        def job(task, request: dict) -> dict:  # noqa: ANN001
            attempt = self.count(name)
            return run_job(task, lambda report: body(report, attempt, request), heartbeat=heartbeat)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    yield Jobs(tmp_path / "celery")


def worker(jobs: Jobs):
    """A real worker thread consuming the app's queue."""
    return start_worker(jobs.app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=10,
                        loglevel="WARNING")


async def collect(agen, into: list) -> None:  # noqa: ANN001
    async for event in agen:
        into.append(event)


def test_events_are_relayed_in_order_and_errors_keep_their_status(jobs: Jobs) -> None:
    def build(report: JobReporter, attempt: int, request: dict) -> None:
        report.status("pulling manifest")
        for done in (0, 5, 10):
            report.progress("pulling abc", "sha256:abc", 10, done)
        report.emit({"status": "indexed", "url": request["url"]})  # a service's own event, as it is
        report.emit(ProgressEvent(status="success"))

    def missing(report: JobReporter, attempt: int, request: dict) -> None:
        report.status("pulling manifest")
        raise NotFound("pull model manifest: file does not exist")

    jobs.task("t.build", build)
    jobs.task("t.missing", missing)
    runner = JobRunner(jobs.app, timing=FAST)
    events: list[dict] = []
    with worker(jobs):
        asyncio.run(collect(runner.run("pull", "t.build", {"url": "http://x.test/"}), events))
        with pytest.raises(NotFound, match="file does not exist"):
            asyncio.run(collect(runner.run("pull", "t.missing", {}), []))
    assert events[0] == {"status": "pulling manifest"}
    assert events[-2:] == [{"status": "indexed", "url": "http://x.test/"}, {"status": "success"}]
    layer = [e for e in events if e["status"] == "pulling abc"]
    assert layer[-1] == {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 10}
    assert all(e.get("completed", 0) <= 10 for e in layer)


def test_callers_of_one_key_join_one_job(jobs: Jobs) -> None:
    def slow(report: JobReporter, attempt: int, request: dict) -> None:
        report.status("pulling manifest")
        assert jobs.release.wait(30)
        report.status("success")

    jobs.task("t.slow", slow)
    store = MemoryJobStore()
    runner = JobRunner(jobs.app, store, timing=FAST)
    first: list[dict] = []
    second: list[dict] = []

    async def scenario() -> None:
        one = asyncio.create_task(collect(runner.run("pull", "t.slow", {}, key="h/ns/m:v1"), first))
        while not first:
            await asyncio.sleep(0.05)
        two = asyncio.create_task(collect(runner.run("pull", "t.slow", {}, key="h/ns/m:v1"), second))
        await asyncio.sleep(0.3)
        jobs.release.set()
        await asyncio.gather(one, two)

    with worker(jobs):
        asyncio.run(scenario())
    assert jobs.runs == {"t.slow": 1}
    assert first == second == [{"status": "pulling manifest"}, {"status": "success"}]
    assert [state for state, _ in store.finished.values()] == ["succeeded"]
    assert store.active("pull", "h/ns/m:v1") is None


def test_a_silent_worker_gets_its_job_queued_again(jobs: Jobs) -> None:
    def flaky(report: JobReporter, attempt: int, request: dict) -> None:
        report.status("pulling manifest")
        if attempt == 1:  # this worker hangs without a heartbeat, as a killed one would look
            jobs.release.wait(30)
            return
        report.status("success")

    jobs.task("t.flaky", flaky, heartbeat=3600)
    runner = JobRunner(jobs.app, MemoryJobStore(), timing=JobTiming(stale_seconds=1.0, poll_seconds=0.05))
    events: list[dict] = []
    with worker(jobs):
        try:
            asyncio.run(collect(runner.run("pull", "t.flaky", {}, key="k"), events))
        finally:
            jobs.release.set()
    assert jobs.runs == {"t.flaky": 2}
    assert events == [{"status": "pulling manifest"}, {"status": "success"}]  # nothing sent twice


def test_a_job_no_worker_picks_up_is_a_503(jobs: Jobs) -> None:
    jobs.task("t.never", lambda report, attempt, request: None)
    store = MemoryJobStore()
    runner = JobRunner(jobs.app, store, timing=JobTiming(pickup_timeout=0.5, poll_seconds=0.05), worker="test")
    with pytest.raises(ServiceUnavailable, match="no worker picked up the job: is the test worker running"):
        asyncio.run(collect(runner.run("pull", "t.never", {}, key="k"), []))
    assert [state for state, _ in store.finished.values()] == ["failed"]


def test_a_job_given_up_before_any_worker_took_it_never_runs_later(jobs: Jobs) -> None:
    jobs.task("t.late", lambda report, attempt, request: report.status("ran"))
    runner = JobRunner(jobs.app, timing=JobTiming(pickup_timeout=0.5, poll_seconds=0.05), worker="test")
    with pytest.raises(ServiceUnavailable, match="no worker picked up the job"):
        asyncio.run(collect(runner.run("pull", "t.late", {}), []))
    done = threading.Event()
    jobs.task("t.probe", lambda report, attempt, request: done.set())
    with worker(jobs):  # a worker that starts now finds the message, expired: the caller was told it failed
        jobs.app.send_task("t.probe", kwargs={"request": {}})
        assert done.wait(30)
    assert "t.late" not in jobs.runs


@pytest.mark.parametrize(("env", "lease", "redeliveries"), [
    ({}, 30.0, 3),
    ({"CORRAL_JOB_LEASE_SECONDS": "4", "CORRAL_JOB_REDELIVERIES": "1"}, 4.0, 1),
    ({"CORRAL_TRANSFER_STALE_SECONDS": "3"}, 3.0, 3),  # the older name still works
    ({"CORRAL_JOB_LEASE_SECONDS": "5", "CORRAL_TRANSFER_STALE_SECONDS": "3"}, 5.0, 3),
    ({"CORRAL_JOB_LEASE_SECONDS": "0", "CORRAL_JOB_REDELIVERIES": "-2"}, 30.0, 0),
])
def test_lease_and_redeliveries_come_from_the_environment(env: dict, lease: float, redeliveries: int) -> None:
    timing = JobTiming.from_env(env, pickup_timeout=60.0)
    assert (timing.stale_seconds, timing.max_restarts, timing.pickup_timeout) == (lease, redeliveries, 60.0)


@pytest.mark.parametrize(("worker_name", "kind", "message"), [
    ("registry", "pull", "the registry worker stopped while pulling the model; try again"),
    ("registry", "push", "the registry worker stopped while pushing the model; try again"),
    ("websearch", "crawl", "the websearch worker stopped while crawling the site; try again"),
    ("websearch", "other", "the websearch worker stopped while running the other job; try again"),
])
def test_a_lost_worker_is_named_with_what_it_was_doing(jobs: Jobs, worker_name: str, kind: str,
                                                       message: str) -> None:
    assert JobRunner(jobs.app, worker=worker_name).worker_lost(kind) == message


def test_a_job_whose_workers_keep_going_silent_ends_with_a_final_error(jobs: Jobs) -> None:
    def hangs(report: JobReporter, attempt: int, request: dict) -> None:
        report.status(f"attempt {attempt}")
        jobs.release.wait(30)

    jobs.task("t.hangs", hangs, heartbeat=3600)
    runner = JobRunner(jobs.app, timing=JobTiming(stale_seconds=0.8, max_restarts=1, poll_seconds=0.05))
    events: list[dict] = []
    with worker(jobs):
        try:
            with pytest.raises(ServiceUnavailable,
                               match="^the registry worker stopped while creating the model; try again$"):
                asyncio.run(collect(runner.run("create", "t.hangs", {}), events))
        finally:
            jobs.release.set()
    assert jobs.runs == {"t.hangs": 2}
    assert events == [{"status": "attempt 1"}, {"status": "attempt 2"}]  # the same line, changed, is relayed


def test_reporter_coalesces_progress_per_digest_and_beats() -> None:
    published: list[dict] = []
    reporter = JobReporter(published.append, min_interval=0, heartbeat=60)
    try:
        reporter.status("pulling manifest")
        reporter.progress("pulling abc", "sha256:abc", 100, 0)
        for done in (10, 50, 100, 40, 500):
            reporter.progress("pulling abc", "sha256:abc", 100, done)
        reporter.status("success")
    finally:
        reporter.close()
    assert published[1]["events"][1] == {"status": "pulling abc", "digest": "sha256:abc", "total": 100}
    assert published[-1]["events"] == [{"status": "pulling manifest"},
                                       {"status": "pulling abc", "digest": "sha256:abc", "total": 100,
                                        "completed": 100},
                                       {"status": "success"}]
    assert all("beat" in meta for meta in published)


def test_memory_job_store_keeps_the_contract() -> None:
    check_job_store(MemoryJobStore())
