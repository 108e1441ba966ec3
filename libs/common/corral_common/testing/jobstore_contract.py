"""The contract every ``corral_common.jobs.JobStore`` keeps; run against the memory store and the registry's DB one."""

from __future__ import annotations

from corral_common.jobs import JobStore


def check_job_store(store: JobStore) -> None:
    """Record, find, retask and finish jobs the way the runner relies on."""
    assert store.active("pull", "h/ns/m:v1") is None
    store.start("pull", "h/ns/m:v1", "job1", "task1")
    found = store.active("pull", "h/ns/m:v1")
    assert found is not None and (found.job_id, found.task_id) == ("job1", "task1") and found.queued_at > 0
    assert store.active("push", "h/ns/m:v1") is None  # kinds do not share jobs
    assert store.active("pull", "h/ns/other:v1") is None
    store.retask("job1", "task2")
    found = store.active("pull", "h/ns/m:v1")
    assert found is not None and found.task_id == "task2"
    store.finish("job1", "succeeded")
    assert store.active("pull", "h/ns/m:v1") is None
    store.start("pull", "h/ns/m:v1", "job2", "task3")
    store.finish("job2", "failed", "no worker picked up the job")
    assert store.active("pull", "h/ns/m:v1") is None
    store.finish("unknown", "abandoned")  # finishing a job nobody recorded is not an error
