"""The websearch Celery app and task names (the API enqueues by name, the worker implements them).

Its tasks go to their own queue, so the registry's worker never receives them on a shared broker.
"""

from __future__ import annotations

from collections.abc import Mapping

from celery import Celery

from corral_common.tasks import make_celery

QUEUE = "websearch"
INDEX_URL_TASK = "corral.websearch.index_url"
CRAWL_TASK = "corral.websearch.crawl"


def make_websearch_celery(environ: Mapping[str, str]) -> Celery:
    """The shared Celery configuration, with websearch tasks routed to their queue."""
    app = make_celery("corral-websearch", environ)
    app.conf.task_routes = {"corral.websearch.*": {"queue": QUEUE}}
    return app
