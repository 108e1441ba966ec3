"""The registry's job worker as a thread of the registry process (corral serve's default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from corral_common.digest import Digest
from corral_common.tasks import QueueSettings, make_celery
from corral_common.testing.ggufwriter import runnable_model
from corral_registry.inline_worker import InlineWorker
from corral_registry.main import create_app
from corral_registry.settings import RegistrySettings, inline_worker_enabled


@pytest.fixture
def apps(tmp_path: Path):
    """A worker app with one task, and a second app on the same broker that only sends (as the service does)."""
    queue = QueueSettings(tmp_path / "home" / "celery")
    sender = make_celery("corral-registry", queue)
    worker_app = make_celery("corral-registry", queue)

    name = f"test.add.{tmp_path.name}"  # one name per test: Celery warns when a name is registered twice

    @worker_app.task(name=name, bind=True)
    def add(self, a: int, b: int) -> int:
        self.update_state(state="PROGRESS", meta={"step": 1})
        return a + b

    return sender, worker_app, name


def test_jobs_queued_by_the_service_run_in_its_own_process_and_report_back(apps) -> None:
    sender, worker_app, name = apps
    worker = InlineWorker(worker_app, concurrency=2)
    worker.start()
    try:
        results = [sender.send_task(name, args=(i, 10)) for i in range(3)]
        assert [r.get(timeout=30) for r in results] == [10, 11, 12]
        assert all(r.state == "SUCCESS" for r in results)
    finally:
        worker.stop()
    assert not worker.thread.is_alive()


def test_a_job_queued_while_no_worker_runs_waits_for_the_next_one(apps) -> None:
    sender, worker_app, name = apps
    queued = sender.send_task(name, args=(2, 3))  # nothing consumes yet: the job stays in the queue
    worker = InlineWorker(worker_app)
    worker.start()
    try:
        assert queued.get(timeout=30) == 5
    finally:
        worker.stop()


def test_only_the_embedded_mode_turns_it_on() -> None:
    assert not inline_worker_enabled({})
    assert not inline_worker_enabled({"CORRAL_REGISTRY_INLINE_WORKER": "0"})
    assert inline_worker_enabled({"CORRAL_REGISTRY_INLINE_WORKER": "1"})


def test_the_service_runs_create_jobs_on_its_inline_worker_built_from_settings(tmp_path: Path) -> None:
    settings = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home", inline_worker=True)
    data = runnable_model().build()  # /api/create has llama.cpp load it (without weights)
    digest = Digest.of_bytes(data)
    with TestClient(create_app(settings)) as client:
        assert client.post(f"/store/blobs/{digest}", content=data).status_code == 201
        answer = client.post("/store/create", json={"model": "tiny", "files": {"tiny.gguf": str(digest)}})
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert answer.status_code == 200
    assert lines[0] == {"status": "parsing GGUF"} and lines[-1] == {"status": "success"}
    assert (tmp_path / "home" / "celery" / "queue").is_dir()  # the queue the settings name, not the environment's
    assert (tmp_path / "models" / "manifests/registry.ollama.ai/library/tiny/latest").is_file()
