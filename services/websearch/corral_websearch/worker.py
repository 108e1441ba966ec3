"""The Celery worker of the websearch service: index and crawl jobs, on the ``websearch`` queue.

Run with ``celery -A corral_websearch.worker:celery_app worker -Q websearch``. ``worker_app(settings)``
builds the app with its tasks from explicit settings; ``celery_app`` is built from the environment the
first time Celery's command line asks for it, not when this module is imported.
"""

from __future__ import annotations

import asyncio
from typing import Any

from celery import Celery, Task

from corral_common.jobs import run_job
from corral_common.tasks import cli_app

from corral_websearch.jobs import run_index_job
from corral_websearch.settings import WebsearchSettings
from corral_websearch.tasks import CRAWL_TASK, INDEX_URL_TASK, make_websearch_celery


def _register(app: Celery, settings: WebsearchSettings) -> None:
    """The index tasks on ``app``, each running with ``settings``."""

    @app.task(name=INDEX_URL_TASK, bind=True, shared=False)
    def index_url(self: Task, request: dict[str, Any]) -> dict[str, Any]:
        """Fetch one page and add it to the built-in index."""
        return run_job(self, lambda report: asyncio.run(run_index_job(settings, request, report.emit, crawl=False)))

    @app.task(name=CRAWL_TASK, bind=True, shared=False)
    def crawl(self: Task, request: dict[str, Any]) -> dict[str, Any]:
        """Crawl a site from a seed URL (robots.txt respected) into the built-in index."""
        return run_job(self, lambda report: asyncio.run(run_index_job(settings, request, report.emit, crawl=True)))


def worker_app(settings: WebsearchSettings) -> Celery:
    """The websearch Celery app with its tasks, configured from ``settings``."""
    app = make_websearch_celery(settings.celery_queue())
    _register(app, settings)
    return app


__getattr__ = cli_app(WebsearchSettings.from_env, worker_app, "websearch-worker")
