"""Prometheus metrics: one registry per app, the HTTP families every service shares, job outcomes, the
``CORRAL_METRICS`` switch, and the merge of several services' expositions into one text.

Each app owns its CollectorRegistry (several apps can live in one process, as in tests); a service adds its
own families next to the code that knows the fact. Label sets stay bounded: route templates, never raw
paths; model names, never users or prompts.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_common.env import current_env, env_bool

METRICS_ENV = "CORRAL_METRICS"
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"  # the route label of a request no route matched (404s, refusals before routing)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
SCRAPE_UP = "corral_scrape_up"


def metrics_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """``CORRAL_METRICS=0`` turns collection off (the overhead benchmark's baseline); on by default."""
    return env_bool(current_env(environ), METRICS_ENV, default=True)


class AppMetrics:
    """One app's registry, the HTTP families every service exports, and factories for its own families."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = self.counter("corral_http_requests", "HTTP requests answered, by route template, method "
                                     "and status.", ("route", "method", "status"))
        self.latency = self.histogram("corral_http_request_duration_seconds", "Time from request to the last "
                                      "byte of the response (whole streams).", ("route", "method"), LATENCY_BUCKETS)
        self.in_flight = self.gauge("corral_http_requests_in_flight", "HTTP requests being answered now.")

    def counter(self, name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
        """A counter in this app's registry (``_total`` is appended to the name)."""
        return Counter(name, doc, tuple(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
        """A gauge in this app's registry."""
        return Gauge(name, doc, tuple(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: Iterable[str] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        """A histogram in this app's registry."""
        return Histogram(name, doc, tuple(labels), buckets=buckets, registry=self.registry)

    def register(self, collector: Collector) -> None:
        """A collector read at scrape time (state that is cheaper to read than to track)."""
        self.registry.register(collector)

    def render(self) -> str:
        """This app's families in the text format."""
        return generate_latest(self.registry).decode()


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/blobs/{digest}``), never the raw path; found again if routing never ran."""
    route = scope.get("route")
    if route is None and "app" in scope:
        from starlette.routing import Match

        route = next((r for r in getattr(scope["app"], "routes", ()) if r.matches(scope)[0] == Match.FULL), None)
    return getattr(route, "path", None) or UNMATCHED


class MetricsMiddleware:
    """Counts every HTTP request by route template, method and status; times it; tracks those in flight."""

    def __init__(self, app: ASGIApp, metrics: AppMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started = {"code": 500}, time.perf_counter()

        async def send_watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_watching)
        finally:
            self.metrics.in_flight.dec()
            route, method = route_template(scope), scope["method"]
            self.metrics.requests.labels(route, method, str(status["code"])).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, service: str, route: bool = True) -> AppMetrics | None:
    """``app.state.metrics``, the middleware that counts the app's requests and (``route``) ``GET /metrics``;
    with ``CORRAL_METRICS=0`` nothing is installed and ``app.state.metrics`` is None."""
    if not metrics_enabled():
        app.state.metrics = None
        return None
    metrics = app.state.metrics = AppMetrics(service)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if route:

        @app.get("/metrics", include_in_schema=False)
        async def exposition() -> Response:
            return Response(metrics.render(), media_type=CONTENT_TYPE)

    return metrics


# --- jobs (caller side) --------------------------------------------------------------------------------
class JobMetrics:
    """Outcomes and durations of the jobs a service follows, and how many run now (read at scrape time)."""

    def __init__(self, metrics: AppMetrics, service: str) -> None:
        self.jobs = metrics.counter(f"corral_{service}_jobs", "Jobs followed to their end, by kind and outcome "
                                    "(success, failed, cancelled: the caller left).", ("kind", "outcome"))
        self.duration = metrics.histogram(f"corral_{service}_job_duration_seconds", "Time from queueing a job "
                                          "to its end, as its caller saw it.", ("kind",), JOB_BUCKETS)
        self.running: Tally[str] = Tally()
        metrics.register(_RunningJobs(f"corral_{service}_jobs_in_progress", self.running))

    def started(self, kind: str) -> None:
        """A caller began following a job."""
        self.running[kind] += 1

    def finished(self, kind: str, outcome: str, seconds: float) -> None:
        """A followed job ended."""
        self.running[kind] -= 1
        self.jobs.labels(kind, outcome).inc()
        self.duration.labels(kind).observe(seconds)


class _RunningJobs(Collector):
    """The jobs being followed now, by kind."""

    def __init__(self, name: str, running: Tally[str]) -> None:
        self.name, self.running = name, running

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, "Jobs queued or running now, by kind.", labels=("kind",))
        for kind, count in sorted(self.running.items()):
            family.add_metric((kind,), count)
        yield family


# --- the merged view -----------------------------------------------------------------------------------
class _Families(Collector):
    """Already-built families, for rendering through prometheus_client's own writer."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self.families)


def _labelled(family: Metric, service: str) -> Metric:
    """The family with ``service`` added to every sample that lacks it."""
    for index, sample in enumerate(family.samples):
        if "service" not in sample.labels:
            family.samples[index] = sample._replace(labels={"service": service, **sample.labels})
    return family


def merge_expositions(texts: Mapping[str, str], up: Mapping[str, bool] | None = None) -> str:
    """One exposition from several services': every family once (one HELP and TYPE), each sample labelled with
    its service; ``up`` adds ``corral_scrape_up{service}`` (1 answered, 0 skipped). A family whose type differs
    between services keeps the first service's samples."""
    merged: dict[str, Metric] = {}
    for service, text in texts.items():
        for family in text_string_to_metric_families(text):
            family = _labelled(family, service)
            kept = merged.setdefault(family.name, family)
            if kept is not family and kept.type == family.type:
                kept.samples.extend(family.samples)
    families = list(merged.values())
    if up is not None:
        gauge = GaugeMetricFamily(SCRAPE_UP, "Whether the gateway could read a service's metrics (1) or not (0).",
                                  labels=("service",))
        for service, ok in up.items():
            gauge.add_metric((service,), 1.0 if ok else 0.0)
        families.append(gauge)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry).decode()


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def family_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry can export (``_total``, ``_bucket`` … included), children or not yet."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names
