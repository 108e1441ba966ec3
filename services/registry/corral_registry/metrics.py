"""The registry's metrics: blob bytes in and out, create/pull/push jobs by outcome and duration, storage errors.

Jobs run in the Celery worker, so their outcomes are counted where this service follows them (JobRunner's
observer). Blob bytes are counted at the HTTP edge of the blob routes (``/store/blobs``, ``/v2/…/blobs``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from corral_common.metrics import AppMetrics, JobMetrics, route_template

from corral_registry.storage import PathNotFound, StorageDriver


class RegistryMetrics:
    """The families only the registry knows about."""

    def __init__(self, metrics: AppMetrics) -> None:
        self.jobs = JobMetrics(metrics, "registry")
        self.blob_bytes = metrics.counter("corral_registry_blob_bytes", "Blob bytes received (in: uploads) and "
                                          "sent (out: downloads) over HTTP.", ("direction",))
        self.storage_errors = metrics.counter("corral_registry_storage_errors", "Storage driver calls that "
                                              "failed (a missing key is no error), by operation.", ("operation",))

    def metered(self, driver: StorageDriver) -> StorageDriver:
        """The driver, with its failures counted."""
        return MeteredDriver(driver, self.storage_errors)  # type: ignore[return-value]


class MeteredDriver:
    """A StorageDriver proxy that counts the exceptions its calls raise (PathNotFound aside)."""

    def __init__(self, driver: StorageDriver, errors: Counter) -> None:
        self._driver, self._errors = driver, errors

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._driver, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute
        return self._counted(name, attribute)

    def _counted(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except PathNotFound:
                raise
            except Exception:
                self._errors.labels(name).inc()
                raise

        return counted


class BlobTraffic:
    """Counts request and response body bytes of the blob routes (one addition per chunk)."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        moved = {"in": 0, "out": 0}

        async def receive_counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                moved["in"] += len(message.get("body", b""))
            return message

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.body":
                moved["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_counting, send_counting)
        finally:
            direction = "out" if scope["method"] == "GET" else "in"
            if moved[direction] and "/blobs/" in route_template(scope):
                self.counter.labels(direction).inc(moved[direction])


def install_registry_metrics(app: Any) -> RegistryMetrics | None:
    """The registry families and the blob byte counter, as ``app.state.registry_metrics`` (None with metrics off)."""
    metrics: AppMetrics | None = app.state.metrics
    meter = app.state.registry_metrics = RegistryMetrics(metrics) if metrics is not None else None
    if meter is not None:
        app.add_middleware(BlobTraffic, counter=meter.blob_bytes)
    return meter
