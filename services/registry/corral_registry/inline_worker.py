"""The registry's Celery worker as a thread of the registry service (opt-in, for small machines).

``corral serve`` runs the registry worker as a process of its own: about 85 MiB resident for a
worker that sits idle almost all the time, in exchange for isolation (a job that crashes or is
killed leaves the registry serving, and the caller's progress stream survives the redelivery).
With CORRAL_REGISTRY_INLINE_WORKER=1 the registry service consumes the same queue, from the same
broker, in a thread of its own process, the way Celery's own embedded test worker runs. Jobs
still go through the queue (a job queued before a restart is picked up after it); conversion and
quantization still run in child processes, so they do not hold the service's GIL.
"""

from __future__ import annotations

import os
import socket
import threading

from celery import Celery
from celery.result import _set_task_join_will_block
from celery.worker import WorkController
from celery.worker import state as worker_state

from corral_common.logs import get_logger

log = get_logger("corral.registry.inline_worker")
STOP_TIMEOUT = 10.0
START_TIMEOUT = 30.0


class _Controller(WorkController):
    """A WorkController that says when its consumer is ready to take jobs."""

    def __init__(self, *args, **kwargs) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer) -> None:
        self.ready.set()


class InlineWorker:
    """Start, watch and stop the worker thread."""

    def __init__(self, app: Celery, concurrency: int = 4) -> None:
        app.finalize()  # as Celery's embedded worker does: tasks bound, and this app the one results go to
        app.set_current()
        app.set_default()
        self.controller = _Controller(app=app, hostname=f"registry-inline-{os.getpid()}@{socket.gethostname()}",
                                      pool="threads", concurrency=concurrency, loglevel="WARNING",
                                      ready_callback=None, without_heartbeat=True, without_mingle=True,
                                      without_gossip=True)
        self.thread = threading.Thread(target=self._run, name="registry-worker", daemon=True)
        self.stopping = False

    def start(self) -> None:
        """Run the worker; returns once it consumes (RuntimeError if it does not within START_TIMEOUT)."""
        self.thread.start()
        if not self.controller.ready.wait(START_TIMEOUT):
            raise RuntimeError("the registry's inline worker did not start")
        # Starting a worker marks the whole process as "inside a task"; the service's own threads are not.
        _set_task_join_will_block(False)
        log.info("registry worker running in-process", hostname=self.controller.hostname)

    def _run(self) -> None:
        try:
            self.controller.start()
        finally:
            if not self.stopping:  # no worker means queued jobs wait forever: let the supervisor restart us
                log.error("registry inline worker stopped; exiting so that the service restarts")
                os._exit(70)

    def stop(self) -> None:
        """Warm shutdown: running jobs finish (up to STOP_TIMEOUT); unacknowledged ones stay queued."""
        self.stopping = True
        worker_state.should_stop = 0  # the consumer loop checks it between polls and shuts down warm
        self.thread.join(STOP_TIMEOUT)
        if self.thread.is_alive():
            log.warning("registry inline worker still busy at shutdown; its jobs will run again")
        worker_state.should_stop = None
