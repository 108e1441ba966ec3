"""The websearch service's metrics: searches and fetches by outcome, fetches the SSRF policy refused by reason,
and the index/crawl jobs queued or running (counted where this service follows them)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from corral_common.errors import AppError
from corral_common.metrics import AppMetrics, JobMetrics

from corral_websearch.net.policy import FetchRefused

# The policy's refusal texts, checked in order: each names the rule it applied (bounded reasons, never URLs).
_REASONS = (("only http and https", "scheme"), ("user name or password", "credentials"),
            ("metadata", "metadata"), ("loopback", "loopback"), ("private", "private"), ("link-local", "link_local"),
            ("port ", "port"))


def refusal_reason(error: FetchRefused) -> str:
    """Which rule of the SSRF policy refused a URL: scheme, credentials, metadata, loopback, private, port, …"""
    text = error.message
    return next((reason for marker, reason in _REASONS if marker in text), "non_public")


def outcome_of(error: BaseException | None) -> str:
    """``ok``, ``refused`` (SSRF policy), ``invalid`` (a 4xx), ``cancelled`` (the caller left) or ``failed``."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, FetchRefused):
        return "refused"
    if isinstance(error, AppError) and error.status < 500:
        return "invalid"
    return "failed"


class WebsearchMetrics:
    """The families only the websearch service knows about."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.searches = metrics.counter("corral_websearch_searches", "web_search requests, by outcome.",
                                        ("outcome",))
        self.fetches = metrics.counter("corral_websearch_fetches", "web_fetch requests, by outcome (ok, refused, "
                                       "invalid, cancelled, failed).", ("outcome",))
        self.refusals = metrics.counter("corral_websearch_fetch_refusals", "URLs the SSRF policy refused, by "
                                        "reason.", ("reason",))
        self.jobs = JobMetrics(metrics, "websearch")

    @contextmanager
    def counted(self, what: str) -> Iterator[None]:
        """Count one ``search`` or ``fetch`` by how it ended (and a refusal by its reason)."""
        with self._counted(self.searches if what == "search" else self.fetches):
            yield

    @contextmanager
    def _counted(self, counter: Any) -> Iterator[None]:
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            counter.labels(outcome_of(error)).inc()
            if isinstance(error, FetchRefused):
                self.refusals.labels(refusal_reason(error)).inc()
