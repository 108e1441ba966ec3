"""A client that leaves stops its generation, on every route that generates: the native API, OpenAI's chat,
completions and Responses, and Anthropic's messages, streamed or not.

Each request asks for an output that takes minutes (a JSON array of 1000 long strings, or ``num_predict`` 20000),
leaves once generation has begun, and then watches the inference service's in-flight requests in the gateway's
/metrics fall back to just the scrape itself. A generation left running would hold its slot for minutes."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from serverproc import Server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
ENDLESS = {"type": "array", "items": {"type": "string", "minLength": 20}, "minItems": 1000}
WORDS = [{"role": "user", "content": "Words:"}]
LONG = 20000

STREAMED = {
    "/api/generate": {"model": MODEL, "prompt": "Words:", "format": ENDLESS, "options": {"num_predict": LONG}},
    "/api/chat": {"model": MODEL, "messages": WORDS, "format": ENDLESS, "options": {"num_predict": LONG}},
    "/v1/chat/completions": {"model": MODEL, "stream": True, "max_tokens": LONG, "messages": WORDS,
                             "response_format": {"type": "json_schema",
                                                 "json_schema": {"name": "words", "schema": ENDLESS}}},
    "/v1/chat/completions n=2": {"model": MODEL, "stream": True, "max_tokens": LONG, "messages": WORDS, "n": 2,
                                 "response_format": {"type": "json_schema",
                                                     "json_schema": {"name": "words", "schema": ENDLESS}}},
    "/v1/completions": {"model": MODEL, "stream": True, "max_tokens": LONG, "prompt": "1, 2, 3,"},
    "/v1/responses": {"model": MODEL, "stream": True, "max_output_tokens": LONG, "input": "Words:",
                      "text": {"format": {"type": "json_schema", "name": "words", "schema": ENDLESS}}},
    "/v1/messages": {"model": MODEL, "stream": True, "max_tokens": LONG, "messages": WORDS},
}
WHOLE = {
    "/api/generate": {**STREAMED["/api/generate"], "stream": False},
    "/v1/chat/completions": {**STREAMED["/v1/chat/completions"], "stream": False},
    "/v1/chat/completions n=2": {**STREAMED["/v1/chat/completions n=2"], "stream": False},
}  # not /v1/completions: it takes no output format, so the model may finish before the client leaves


def _inference_in_flight(server: Server) -> float:
    """Requests the inference service is answering now, this scrape of its /metrics included."""
    text = httpx.get(f"{server.url}/metrics", timeout=60).text
    line = next(line for line in text.splitlines()
                if line.startswith("corral_http_requests_in_flight{") and 'service="inference"' in line)
    return float(line.rsplit(" ", 1)[1])


def _settled(server: Server) -> float:
    """In-flight inference requests once they stop falling (or after 20 s: the generations asked for take minutes)."""
    deadline = time.monotonic() + 20
    while (now := _inference_in_flight(server)) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    return now


@pytest.mark.parametrize("route", list(STREAMED))
def test_leaving_a_stream_stops_its_generation(server: Server, route: str) -> None:
    assert _settled(server) <= 1
    with httpx.stream("POST", server.url + route.split(" ")[0], json=STREAMED[route], timeout=300) as answer:
        assert answer.status_code == 200, answer.read()
        lines = answer.iter_lines()
        events = [json.loads(line.removeprefix("data: ")) for line in (next(lines) for _ in range(8))
                  if line.startswith(("{", "data: {"))]
        assert events  # streaming has begun
        assert _inference_in_flight(server) >= 2  # the generation (two with n=2), and this scrape
    assert _settled(server) <= 1


@pytest.mark.parametrize("route", list(WHOLE))
def test_leaving_before_a_whole_answer_stops_its_generation(server: Server, route: str) -> None:
    assert _settled(server) <= 1
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + route.split(" ")[0], json=WHOLE[route], timeout=httpx.Timeout(300, read=3))
    assert _settled(server) <= 1
