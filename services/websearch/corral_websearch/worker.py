"""The Celery worker of the websearch service: index and crawl jobs, on the ``websearch`` queue.

Run with ``celery -A corral_websearch.worker:celery_app worker -Q websearch``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from celery import Task

from corral_common.env import current_env
from corral_common.logs import configure_logging
from corral_common.tasks import ProgressReporter

from corral_websearch.jobs import run_index_job
from corral_websearch.settings import WebsearchSettings
from corral_websearch.tasks import CRAWL_TASK, INDEX_URL_TASK, make_websearch_celery

celery_app = make_websearch_celery(current_env())


def _run(task: Task, request: dict[str, Any], crawl: bool) -> dict[str, Any]:
    reporter = ProgressReporter(task)
    error = asyncio.run(run_index_job(WebsearchSettings.from_env(), request, reporter.emit, crawl))
    return reporter.result(error)


@celery_app.task(name=INDEX_URL_TASK, bind=True)
def index_url(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Fetch one page and add it to the built-in index."""
    return _run(self, request, crawl=False)


@celery_app.task(name=CRAWL_TASK, bind=True)
def crawl(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Crawl a site from a seed URL (robots.txt respected) into the built-in index."""
    return _run(self, request, crawl=True)


@celery_app.on_after_configure.connect
def _setup_logging(**_: Any) -> None:
    configure_logging("websearch-worker", WebsearchSettings.from_env().debug)
