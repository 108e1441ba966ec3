"""Trace context: one trace across services and into a job when on; a pass-through of traceparent when off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from corral_common import tracing
from corral_common.logs import Telemetry
from corral_common.http import service_app

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, spans kept in memory; off again after the test."""
    monkeypatch.setattr(tracing, "_state", tracing._Tracing())
    spans = InMemorySpanExporter()
    assert tracing.configure_tracing("test", exporter=spans)
    yield spans


def _pair() -> tuple[FastAPI, dict[str, str]]:
    """A front app whose route calls a back app (as the gateway calls inference); the back records its headers."""
    back, seen = service_app("corral back"), {}
    front = service_app("corral front")

    @back.post("/run")
    async def run(request: Request) -> dict[str, str]:
        seen.update(request.headers)
        return {}

    @front.post("/api/chat")
    async def chat() -> dict[str, str]:
        span = tracing.client_span("inference POST", **{"peer.service": "inference"})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(back), base_url="http://back") as client:
            await client.post("/run", headers=span.headers)
        span.end()
        return {}

    return front, seen


def _chat(front: FastAPI, headers: dict[str, str]) -> None:
    async def call() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(front), base_url="http://front") as client:
            assert (await client.post("/api/chat", headers=headers)).status_code == 200

    asyncio.run(call())


def test_off_by_default_and_passes_traceparent_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_state", tracing._Tracing())
    assert not tracing.configure_tracing("test", "")
    front, seen = _pair()
    _chat(front, {"traceparent": CALLER})
    assert not tracing.enabled() and seen["traceparent"] == CALLER


def _ancestors(exporter: InMemorySpanExporter, span) -> set[int]:
    """The span ids above a span (FastAPI's own spans may sit between ours)."""
    parents = {s.context.span_id: s.parent for s in exporter.get_finished_spans()}
    found, parent = set(), span.parent
    while parent is not None:
        found.add(parent.span_id)
        parent = parents.get(parent.span_id)
    return found


def test_one_trace_across_two_services(exporter: InMemorySpanExporter) -> None:
    front, seen = _pair()
    _chat(front, {"traceparent": CALLER})
    spans = {s.name: s for s in exporter.get_finished_spans() if not s.name.startswith("fastapi.")}
    assert set(spans) == {"POST /api/chat", "inference POST", "POST /run"}
    assert {s.context.trace_id for s in spans.values()} == {int(CALLER.split("-")[1], 16)}
    assert spans["POST /run"].parent.span_id == spans["inference POST"].context.span_id
    assert spans["POST /api/chat"].context.span_id in _ancestors(exporter, spans["inference POST"])
    assert seen["traceparent"].split("-")[1] == CALLER.split("-")[1]


def test_a_job_continues_the_trace_that_queued_it(exporter: InMemorySpanExporter) -> None:
    with tracing.server_span("POST /store/pull", {}) as request_span:
        headers = tracing.job_headers("corral.registry.pull_model")
    with tracing.job_span("corral.registry.pull_model", headers):
        pass
    spans = {s.name: s for s in exporter.get_finished_spans()}
    job, send = spans["job corral.registry.pull_model"], spans["send corral.registry.pull_model"]
    assert job.context.trace_id == request_span.get_span_context().trace_id
    assert job.parent.span_id == send.context.span_id


def test_job_headers_off_pass_the_callers_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_state", tracing._Tracing())
    with tracing.server_span("POST /store/pull", {"traceparent": CALLER}):
        assert tracing.job_headers("t") == {"traceparent": CALLER}
    assert tracing.job_headers("t") == {}


def test_telemetry_from_env() -> None:
    telemetry = Telemetry.from_env({"CORRAL_LOG_FORMAT": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert telemetry == Telemetry("json", "http://c:4318")
    assert tracing._traces_url("http://c:4318/") == "http://c:4318/v1/traces"
