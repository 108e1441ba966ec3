"""A real ``corral serve`` with JSON logs and OTLP export: one request id and one trace across gateway and inference."""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
LLAMA_NATIVE = re.compile(r"^~?[a-z_]+: |^\s+\S")
REQUIRED = {"timestamp", "level", "service", "request_id", "route", "status", "duration_ms", "model", "event"}


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP (protobuf) trace collector on loopback: keeps every span with its service's name."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.spans: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def keep(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
                self.spans += [(service, span) for scope in resource.scope_spans for span in scope.spans]


class _Receive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.keep(body)  # type: ignore[attr-defined]
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[tuple[Server, Path]]:
    """corral serve with CORRAL_LOG_FORMAT=json, OLLAMA_DEBUG=1 and spans sent to the collector; and its log."""
    tmp = tmp_path_factory.mktemp("observed")
    srv = start_server(tmp, {"CORRAL_LOG_FORMAT": "json", "OLLAMA_DEBUG": "1", "OTEL_BSP_SCHEDULE_DELAY": "200",
                             "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        yield srv, tmp / "serve.log"
    finally:
        stop_server(srv.process)


def _chat(server: Server) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "stream": True,
            "options": {"num_predict": 4, "temperature": 0}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=120, trust_env=False) as response:
        response.read()
    assert response.status_code == 200
    return response


def _log_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _access(lines: list[dict], service: str, route: str, request_id: str) -> dict | None:
    return next((line for line in lines if line.get("event") == "request" and line.get("service") == service
                 and line.get("route") == route and line.get("request_id") == request_id), None)


def test_one_request_id_on_gateway_and_inference_lines(observed: tuple[Server, Path]) -> None:
    server, log = observed
    request_id = _chat(server).headers["x-request-id"]
    deadline = time.monotonic() + 20
    while True:  # each service writes its access line when its own response ends: wait for both
        lines = _log_lines(log)
        gateway = _access(lines, "api", "/api/chat", request_id)
        inference = _access(lines, "inference", "/run/completion", request_id)
        if (gateway is not None and inference is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert gateway is not None and inference is not None
    for line in (gateway, inference):
        assert REQUIRED <= line.keys() and line["status"] == 200 and line["model"] == MODEL
    assert any(line["level"] == "debug" and line["service"] == "inference" for line in lines)  # OLLAMA_DEBUG=1
    text = [line for line in log.read_text().splitlines() if line.strip()]
    # llama.cpp writes its own ``function: message`` lines to the native stderr (OLLAMA_DEBUG=1 turns them on)
    not_json = [line for line in text if not line.startswith("{") and not LLAMA_NATIVE.match(line)]
    assert not not_json, not_json[:5]
    assert all({"timestamp", "level", "service", "event"} <= json.loads(line).keys()
               for line in text if line.startswith("{"))


def test_one_trace_spans_gateway_and_inference(observed: tuple[Server, Path], collector: Collector) -> None:
    server, _ = observed
    response = _chat(server)
    assert response.headers["x-request-id"]
    deadline, trace = time.monotonic() + 20, None
    while time.monotonic() < deadline and trace is None:
        time.sleep(0.3)
        with collector.lock:
            spans = list(collector.spans)
        chats = [s for name, s in spans if name == "corral-api" and s.name == "POST /api/chat"]
        for chat in chats:
            members = [(name, s) for name, s in spans if s.trace_id == chat.trace_id]
            if any(name == "corral-inference" and s.name == "POST /run/completion" for name, s in members):
                trace = members
    assert trace is not None, "no trace with both the gateway's and the inference service's request spans"
    by_id = {s.span_id: (name, s) for name, s in trace}
    run = next(s for name, s in trace if name == "corral-inference" and s.name == "POST /run/completion")
    caller = by_id[run.parent_span_id]
    assert caller[0] == "corral-api" and caller[1].name == "inference POST"
    attributes = {a.key: a.value.string_value for a in run.attributes}
    assert attributes.get("model") == MODEL, run.attributes
