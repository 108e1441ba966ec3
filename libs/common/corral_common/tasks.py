"""The Celery app factory and the task names (the job runner itself is ``corral_common.jobs``).

Embedded default: a filesystem broker and a SQLite result backend under CORRAL_HOME, so no
server is needed. Distributed: CORRAL_BROKER_URL (e.g. redis://) and CORRAL_RESULT_BACKEND.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from corral_common.env import corral_home, env_str
from corral_common.logs import Telemetry, configure_telemetry

if TYPE_CHECKING:  # Celery (~0.1 s to import) loads with the first app made: serve reads QueueSettings without it
    from celery import Celery

CREATE_MODEL_TASK = "corral.registry.create_model"
PULL_MODEL_TASK = "corral.registry.pull_model"
PUSH_MODEL_TASK = "corral.registry.push_model"
REGISTRY_GC_TASK = "corral.registry.garbage_collect"
# Seconds without a task after which a worker ends (set by corral serve on a worker it starts on first use).
WORKER_IDLE_EXIT_ENV = "CORRAL_WORKER_IDLE_EXIT"
S = TypeVar("S", bound="_Settings")


@dataclass(frozen=True)
class QueueSettings:
    """Where jobs travel: a broker and a result backend, or files and SQLite under ``spool`` when unset."""

    spool: Path
    broker_url: str = ""
    result_backend: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "QueueSettings":
        """CORRAL_BROKER_URL, CORRAL_RESULT_BACKEND; the embedded spool is CORRAL_HOME/celery."""
        return cls(corral_home(environ) / "celery", env_str(environ, "CORRAL_BROKER_URL"),
                   env_str(environ, "CORRAL_RESULT_BACKEND"))

    def inbox(self) -> Path | None:
        """The folder the filesystem broker keeps waiting messages in (one ``*.<queue>.msg`` file each);
        None with a broker server."""
        return None if self.broker_url else _inbox(self.spool)


def _inbox(spool: Path) -> Path:
    return spool / "queue"


def _filesystem_broker(spool: Path) -> dict[str, Any]:
    """Broker settings for kombu's serverless filesystem transport."""
    queue, processed, control = _inbox(spool), spool / "processed", spool / "control"
    for folder in (queue, processed, control):
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": "filesystem://",
        "broker_transport_options": {
            "data_folder_in": str(queue), "data_folder_out": str(queue),
            "processed_folder": str(processed), "store_processed": False,
            "control_folder": str(control),
            "polling_interval": 0.2,  # s; 0.05 cost an idle worker 0.7% of a core, 0.2 costs 0.2%
        },
    }


def make_celery(name: str, queue: QueueSettings) -> Celery:
    """A Celery app for explicit queue settings (the embedded broker and backend for what is unset)."""
    from celery import Celery

    spool = queue.spool
    spool.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {"broker_url": queue.broker_url} if queue.broker_url else _filesystem_broker(spool)
    backend = queue.result_backend or f"db+sqlite:///{spool / 'results.sqlite'}"
    app = Celery(name)
    app.conf.update(
        conf,
        result_backend=backend,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_track_started=True, result_expires=3600, broker_connection_retry_on_startup=True,
        database_engine_options={"connect_args": {"timeout": 30}},
        database_short_lived_sessions=True,
        worker_hijack_root_logger=False,
    )
    return app


class _Settings(Protocol):
    debug: bool
    telemetry: Telemetry


def cli_app(load: Callable[[], S], build: Callable[[S], Celery], process: str) -> Callable[[str], Celery]:
    """A worker module's ``__getattr__``: ``celery_app`` for ``celery -A module:celery_app``, built on first use.

    Celery's command line needs a module attribute; building it on first use keeps reading the settings
    (``load``, from the worker process's environment) out of import time. The process logs as ``process``.
    """

    @lru_cache(maxsize=1)
    def built() -> Celery:
        settings = load()
        configure_telemetry(process, settings.debug, settings.telemetry)
        return build(settings)

    def attribute(name: str) -> Celery:
        if name == "celery_app":
            return built()
        raise AttributeError(name)

    return attribute
