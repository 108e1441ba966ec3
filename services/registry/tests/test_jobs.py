"""Transfer jobs through the shared runner with the registry's DB job store: callers of one model share a
task, progress is relayed once per change, and a task whose worker went silent is queued again (a Celery
app on in-memory transports stands in for the worker; corral_common's tests use a real one)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select

from corral_common.errors import NotFound, ServiceUnavailable
from corral_common.jobs import JobRunner, JobTiming
from corral_common.testing.jobstore_contract import check_job_store
from corral_registry.db import Database
from corral_registry.db import queries as q
from corral_registry.db.jobs import DbJobStore
from corral_registry.db.models import TransferJob


@pytest.fixture
def celery() -> Celery:
    app = Celery("test", broker="memory://", backend="cache+memory://")
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return app


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'jobs.db'}")


class Sent:
    """Records the tasks a JobRunner sends."""

    def __init__(self, celery: Celery) -> None:
        self.ids: list[str] = []
        original = celery.send_task

        def send_task(name, kwargs=None, task_id=None, **options):  # noqa: ANN001
            self.ids.append(task_id)
            return original(name, kwargs=kwargs, task_id=task_id, **options)

        celery.send_task = send_task  # type: ignore[method-assign]


def publish(celery: Celery, task_id: str, events: list[dict], state: str = "PROGRESS", **extra) -> None:
    celery.backend.store_result(task_id, {"events": events, **extra}, state)


async def collect(agen, into: list) -> None:
    async for event in agen:
        into.append(event)


def runner(celery: Celery, db: Database, **timing) -> JobRunner:
    return JobRunner(celery, DbJobStore(db), JobTiming(**timing))


def pull(jobs: JobRunner, model: str):
    return jobs.run("pull", "t", {"model": model}, key=model)


def test_the_database_job_store_keeps_the_contract(db: Database) -> None:
    check_job_store(DbJobStore(db))


def test_progress_is_relayed_once_per_change_and_callers_share_the_job(celery: Celery, db: Database) -> None:
    sent = Sent(celery)
    jobs = runner(celery, db, stale_seconds=30, poll_seconds=0.01)
    first, second = [], []

    async def scenario() -> None:
        one = asyncio.create_task(collect(pull(jobs, "h/ns/m:v1"), first))
        await asyncio.sleep(0.1)
        two = asyncio.create_task(collect(pull(jobs, "h/ns/m:v1"), second))
        await asyncio.sleep(0.1)
        task_id = sent.ids[0]
        layer = {"status": "pulling abc", "digest": "sha256:abc", "total": 10, "completed": 5}
        publish(celery, task_id, [{"status": "pulling manifest"}, layer], beat=1)
        await asyncio.sleep(0.1)
        publish(celery, task_id, [{"status": "pulling manifest"}, {**layer, "completed": 10}], beat=2)
        await asyncio.sleep(0.1)
        publish(celery, task_id, [{"status": "pulling manifest"}, {**layer, "completed": 10}, {"status": "success"}],
                "SUCCESS")
        await asyncio.gather(one, two)

    asyncio.run(scenario())
    assert len(sent.ids) == 1
    assert [e["status"] for e in first] == ["pulling manifest", "pulling abc", "pulling abc", "success"]
    assert [e.get("completed") for e in first if "digest" in e] == [5, 10]
    assert second[-1] == {"status": "success"}
    with db.session() as session:
        assert q.active_job(session, "pull", "h/ns/m:v1") is None
        assert [job.state for job in session.scalars(select(TransferJob))] == ["succeeded"]


def test_a_silent_worker_gets_its_job_queued_again(celery: Celery, db: Database) -> None:
    sent = Sent(celery)
    jobs = runner(celery, db, stale_seconds=0.3, poll_seconds=0.02)
    events: list[dict] = []
    retasked: list[str] = []

    async def scenario() -> None:
        relay = asyncio.create_task(collect(pull(jobs, "h/ns/m:v1"), events))
        await asyncio.sleep(0.1)
        publish(celery, sent.ids[0], [{"status": "pulling manifest"}], beat=1)  # then the worker dies
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(sent.ids) == 2:
                break
        with db.session() as session:
            retasked.append(q.active_job(session, "pull", "h/ns/m:v1").task_id)
        publish(celery, sent.ids[1], [{"status": "pulling manifest"}, {"status": "success"}], "SUCCESS")
        await relay

    asyncio.run(scenario())
    assert len(sent.ids) == 2 and retasked == [sent.ids[1]]
    assert [e["status"] for e in events] == ["pulling manifest", "success"]  # no repeat of what was sent


def test_errors_keep_their_status_and_unclaimed_jobs_time_out(celery: Celery, db: Database) -> None:
    sent = Sent(celery)
    jobs = runner(celery, db, stale_seconds=30, pickup_timeout=0.3, poll_seconds=0.02)

    async def failing() -> None:
        relay = collect(pull(jobs, "h/ns/a:v1"), [])
        task = asyncio.create_task(relay)
        await asyncio.sleep(0.1)
        publish(celery, sent.ids[-1], [], "SUCCESS", error={"status": 404, "message": "pull model manifest: "
                                                                                   "file does not exist"})
        await task

    with pytest.raises(NotFound, match="file does not exist"):
        asyncio.run(failing())
    with pytest.raises(ServiceUnavailable, match="no worker"):
        asyncio.run(collect(pull(jobs, "h/ns/b:v1"), []))
    with db.session() as session:
        states = {job.model: (job.state, job.error) for job in session.scalars(select(TransferJob))}
    assert states["h/ns/a:v1"] == ("failed", "pull model manifest: file does not exist")
    assert states["h/ns/b:v1"][0] == "failed" and "no worker" in states["h/ns/b:v1"][1]


def test_a_recorded_job_whose_worker_died_long_ago_is_not_joined(celery: Celery, db: Database) -> None:
    sent = Sent(celery)
    jobs = runner(celery, db, stale_seconds=0.2, poll_seconds=0.02)
    with db.session() as session:
        q.create_job(session, "old", "pull", "h/ns/m:v1", "dead-task")
    publish(celery, "dead-task", [{"status": "pulling manifest"}], beat=0)  # last beat: long ago
    events: list[dict] = []

    async def scenario() -> None:
        relay = asyncio.create_task(collect(pull(jobs, "h/ns/m:v1"), events))
        await asyncio.sleep(0.1)
        publish(celery, sent.ids[0], [{"status": "success"}], "SUCCESS")
        await relay

    asyncio.run(scenario())
    assert sent.ids and sent.ids[0] != "dead-task" and events == [{"status": "success"}]
    with db.session() as session:
        assert q.get_job(session, "old").state == "abandoned"
