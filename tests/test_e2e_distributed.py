"""The same create job through a real Redis broker and result backend (the distributed mode's queue)."""

from __future__ import annotations

import socket

import ollama
import pytest
import redis

from serverproc import start_server, stop_server

pytestmark = pytest.mark.e2e
REDIS = "redis://127.0.0.1:6379"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
def test_create_runs_as_a_celery_task_over_redis(tmp_path, server) -> None:
    db = redis.Redis.from_url(f"{REDIS}/14")
    db.flushdb()
    srv = start_server(tmp_path, {"CORRAL_BROKER_URL": f"{REDIS}/13", "CORRAL_RESULT_BACKEND": f"{REDIS}/14"})
    try:
        client = ollama.Client(host=srv.url)
        source = ollama.Client(host=server.url).show("smollm2:135m").modelfile.split("\nFROM ", 1)[1].split("\n")[0]
        digest = client.create_blob(source)
        statuses = [p.status for p in client.create(model="via-redis", files={"m.gguf": digest},
                                                    system="Hi.", stream=True)]
        assert statuses[-1] == "success"
        assert "via-redis:latest" in {m.model for m in client.list().models}
        task_keys = db.keys("celery-task-meta-*")
        assert task_keys, "the create job's result should be stored in Redis"
        assert not (srv.home / "celery" / "queue").exists() or not any((srv.home / "celery" / "queue").iterdir())
    finally:
        stop_server(srv.process)
