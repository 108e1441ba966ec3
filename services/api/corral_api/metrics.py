"""The gateway's metrics: auth refusals by reason, and the merged view of every service's /metrics.

In the embedded default one scrape of the gateway sees everything: it reads the internal services' /metrics
and merges them with its own, each sample labelled with its service. A service that does not answer is
left out with ``corral_scrape_up{service=...} 0``. Auth and websearch start on their first connection, so
they are read only once the gateway has used them (a scrape must not wake them), unless
``CORRAL_LAZY_SERVICES=0``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import Scope

from corral_common.env import current_env, env_bool
from corral_common.logs import get_logger
from corral_common.metrics import AppMetrics, merge_expositions
from corral_common.tls import tls_context

from corral_api.clients import Denial

log = get_logger("corral.api.metrics")
SCRAPE_TIMEOUT = httpx.Timeout(5.0, connect=1.0)
LAZY = ("auth", "websearch")  # started by the supervisor on their first connection


class GatewayMetrics:
    """Refusals the gateway's auth gate answers: failed credentials and rate limits, by reason."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.auth_failures = metrics.counter("corral_gateway_auth_failures", "Requests refused for their "
                                             "credential, by reason (missing_credential, invalid_credential, "
                                             "insufficient_scope, bad_request, auth_unavailable).", ("reason",))
        self.rate_limited = metrics.counter("corral_gateway_rate_limit_refusals", "Requests refused with 429, by "
                                            "reason (rate_limit, lockout after failed attempts).", ("reason",))

    def refused(self, scope: Scope, denial: Denial) -> None:
        """Count one refusal of the auth gate."""
        if denial.status == 429:
            self.rate_limited.labels("lockout" if "failed attempts" in denial.message else "rate_limit").inc()
            return
        self.auth_failures.labels(_failure_reason(scope, denial.status)).inc()


def _failure_reason(scope: Scope, status: int) -> str:
    """A bounded reason for a non-429 refusal."""
    if status == 401:
        sent = any(name.lower() in (b"authorization", b"x-api-key") for name, _ in scope.get("headers", []))
        return "invalid_credential" if sent else "missing_credential"
    return {403: "insufficient_scope", 400: "bad_request"}.get(status, "auth_unavailable")


def count_refusal(scope: Scope, denial: Denial) -> None:
    """Count a refusal on the app's gateway metrics, when metrics are on."""
    app = scope.get("app")
    meter: GatewayMetrics | None = getattr(app.state, "gateway_metrics", None) if app is not None else None
    if meter is not None:
        meter.refused(scope, denial)


@dataclass
class ScrapeTargets:
    """The internal services' base URLs, and which lazy ones the gateway has used (so are running)."""

    urls: dict[str, str]
    lazy: tuple[str, ...] = LAZY
    used: set[str] = field(default_factory=set)

    def due(self) -> dict[str, str]:
        """The services to read now: every eager one, and the lazy ones already started."""
        return {name: url for name, url in self.urls.items() if name not in self.lazy or name in self.used}

    def watch(self, name: str, client: httpx.AsyncClient) -> None:
        """Mark ``name`` as started once the gateway sends it a request."""

        async def seen(_request: httpx.Request) -> None:
            self.used.add(name)

        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks.get("request", []), seen]}


def scrape_targets(urls: Mapping[str, str], environ: Mapping[str, str] | None = None) -> ScrapeTargets:
    """Targets for the merged view; with CORRAL_LAZY_SERVICES=0 every service runs, so every one is read."""
    lazy = LAZY if env_bool(current_env(environ), "CORRAL_LAZY_SERVICES", default=True) else ()
    return ScrapeTargets(dict(urls), lazy)


async def _scrape(client: httpx.AsyncClient, name: str, url: str) -> str | None:
    """One service's exposition, or None when it does not answer."""
    try:
        response = await client.get(f"{url.rstrip('/')}/metrics")
    except httpx.HTTPError as exc:
        log.info("metrics scrape failed", service=name, error=type(exc).__name__)
        return None
    return response.text if response.status_code == 200 else None


async def merged_exposition(own: AppMetrics, targets: ScrapeTargets) -> str:
    """The gateway's families and every running service's, merged into one text."""
    due = targets.due()
    async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT, trust_env=False, verify=tls_context()) as client:
        answers = await asyncio.gather(*(_scrape(client, name, url) for name, url in due.items()))
    texts: dict[str, str] = {own.service: own.render()}
    texts.update({name: text for name, text in zip(due, answers) if text is not None})
    up = {name: text is not None for name, text in zip(due, answers)}
    return merge_expositions(texts, up)


def install_gateway_metrics(app: Any, urls: Mapping[str, str]) -> GatewayMetrics | None:
    """``app.state.gateway_metrics`` and the merged view's targets (None with metrics off)."""
    metrics: AppMetrics | None = app.state.metrics
    app.state.gateway_metrics = GatewayMetrics(metrics) if metrics is not None else None
    app.state.scrape_targets = scrape_targets(urls)
    return app.state.gateway_metrics


def watch_lazy_services(app: Any) -> None:
    """After the lifespan built the clients: note when the gateway first talks to auth or websearch."""
    targets: ScrapeTargets = app.state.scrape_targets
    targets.watch("auth", app.state.auth.http.client)
    targets.watch("websearch", app.state.websearch.http.client)
