"""The websearch Celery app and task names (the API enqueues by name, the worker implements them).

Its tasks go to their own queue, so the registry's worker never receives them on a shared broker.
"""

from __future__ import annotations

from celery import Celery

from corral_common.tasks import QueueSettings, make_celery

QUEUE = "websearch"
INDEX_URL_TASK = "corral.websearch.index_url"
CRAWL_TASK = "corral.websearch.crawl"


def make_websearch_celery(queue: QueueSettings) -> Celery:
    """The shared Celery configuration, with websearch tasks routed to their queue."""
    app = make_celery("corral-websearch", queue)
    app.conf.task_routes = {"corral.websearch.*": {"queue": QUEUE}}
    return app
