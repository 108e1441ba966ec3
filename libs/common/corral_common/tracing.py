"""W3C trace context across services and jobs; OpenTelemetry spans only when an OTLP endpoint is set.

Off (no ``OTEL_EXPORTER_OTLP_ENDPOINT``): no tracer provider and no span objects; an incoming
``traceparent`` is only kept for the request and passed on to the services and jobs it calls, so a
trace started by a caller is not cut here. On: a server span per request, a client span per internal
call, a consumer span per job, batched to ``<endpoint>/v1/traces`` over OTLP/HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from corral_common.env import env_str

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
_passed: ContextVar[dict[str, str] | None] = ContextVar("corral_trace_headers", default=None)
# The request's (or job's) own span: frameworks may open spans of their own beneath it (FastAPI does)
_request_span: ContextVar[Any] = ContextVar("corral_request_span", default=None)


@dataclass
class _Tracing:
    """The process's tracer once configured (OpenTelemetry's provider is process-wide too)."""

    tracer: Any = None


_state = _Tracing()


def otlp_endpoint(environ: Mapping[str, str]) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT, or empty (tracing off)."""
    return env_str(environ, ENDPOINT_ENV)


def configure_tracing(service: str, endpoint: str = "", exporter: Any = None) -> bool:
    """Export spans of ``service`` to ``endpoint`` (or to ``exporter``, in tests); nothing when neither is set."""
    if not endpoint and exporter is None:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"corral-{service}"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(endpoint))))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _state.tracer = provider.get_tracer("corral")
    trace.set_tracer_provider(provider)  # only the first call in a process counts; ours uses its own tracer
    return True


def _traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL under a base endpoint (as the OpenTelemetry variable means it)."""
    return endpoint.rstrip("/") + "/v1/traces"


def enabled() -> bool:
    """Whether spans are recorded in this process."""
    return _state.tracer is not None


def shutdown() -> None:
    """Flush pending spans (lifespan end)."""
    if _state.tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(5000)


def _trace_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    """The trace context among a request's or a task's headers (names lower-case)."""
    return {k: str(headers[k]) for k in (TRACEPARENT, TRACESTATE) if headers.get(k)}


@contextmanager
def _continued(name: str, incoming: dict[str, str], kind: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
    """A current span continuing ``incoming``'s trace; off: keep ``incoming`` to pass on."""
    if _state.tracer is None:
        token = _passed.set(incoming)
        try:
            yield None
        finally:
            _passed.reset(token)
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    with _state.tracer.start_as_current_span(name, context=extract(incoming), kind=getattr(trace.SpanKind, kind),
                                             attributes=dict(attributes)) as span:
        token = _request_span.set(span)
        try:
            yield span
        finally:
            _request_span.reset(token)


def server_span(name: str, headers: Mapping[str, str], **attributes: Any):
    """The span of one incoming request (header names lower-case), continuing the caller's trace."""
    return _continued(name, _trace_headers(headers), "SERVER", attributes)


def annotate(**attributes: Any) -> None:
    """Set attributes (e.g. the model) on the current request's or job's span, when tracing is on."""
    if _state.tracer is None:
        return
    from opentelemetry import trace

    (_request_span.get() or trace.get_current_span()).set_attributes({k: v for k, v in attributes.items() if v is not None})


class ClientSpan:
    """An outgoing call's span (off: nothing) and the headers that carry its context to the callee."""

    def __init__(self, name: str, attributes: Mapping[str, Any], kind: str = "CLIENT") -> None:
        self.span: Any = None
        if _state.tracer is None:
            self.headers = dict(_passed.get() or {})
            return
        from opentelemetry import trace
        from opentelemetry.propagate import inject

        self.span = _state.tracer.start_span(name, kind=getattr(trace.SpanKind, kind), attributes=dict(attributes))
        self.headers = {}
        inject(self.headers, context=trace.set_span_in_context(self.span))

    def end(self, error: BaseException | None = None) -> None:
        """End the span, marking it failed when ``error`` is given."""
        if self.span is None:
            return
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()


def client_span(name: str, **attributes: Any) -> ClientSpan:
    """Start the span of one call to another service (not made current: it may outlive this task's context)."""
    return ClientSpan(name, attributes)


def job_headers(task_name: str) -> dict[str, str]:
    """Trace headers for a job being queued (a producer span, ended at once: sending is the whole act)."""
    span = ClientSpan(f"send {task_name}", {"messaging.destination": task_name}, kind="PRODUCER")
    span.end()
    return span.headers


def job_span(task_name: str, carrier: Mapping[str, Any]):
    """A worker's span for one job, continuing the trace its task headers carry."""
    return _continued(f"job {task_name}", _trace_headers(carrier), "CONSUMER", {"messaging.destination": task_name})

