"""The typed clients against canned service answers: shapes parsed, errors kept typed across the hop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from corral_common.errors import AppError, BadGateway, NotFound
from corral_common.internal import CompletionEvent, CompletionRequest, EngineModel, TransferRequest
from corral_common.shutdown import Shutdown, ShuttingDown

from corral_api.clients import InferenceClient, RegistryClient
from corral_api.testing import gateway, model

Handler = Callable[[httpx.Request], httpx.Response]
ENGINE = EngineModel(name="m:latest", model_digest="a" * 64)


def _wired(client: Any, handler: Handler) -> Any:
    """The client with its HTTP core answering from ``handler`` instead of the network."""
    client.http.client = httpx.AsyncClient(base_url="http://svc", transport=httpx.MockTransport(handler))
    return client


def _ndjson(*lines: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, content=b"".join(json.dumps(line).encode() + b"\n" for line in lines))


async def _all(events) -> list:
    return [event async for event in events]


def test_completion_lines_become_events_and_the_request_is_the_shared_shape() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return _ndjson({"content": "Hi", "logprobs": [{"token": "Hi", "logprob": -0.5}]},
                       {"done": True, "done_reason": "stop", "context": [1, 2], "eval_count": 1})

    client = _wired(InferenceClient("http://unused"), handler)
    events = asyncio.run(_all(client.complete(CompletionRequest(model=ENGINE, prompt="p"), "rid")))
    assert events[0] == CompletionEvent(content="Hi", logprobs=[{"token": "Hi", "logprob": -0.5}])
    assert events[1].done and events[1].context == [1, 2] and events[1].metrics()["eval_count"] == 1
    assert CompletionRequest.model_validate(sent[0]).prompt == "p"


@pytest.mark.parametrize(("line", "error", "message"), [
    ({"error": "model is busy", "status": 503}, AppError, "model is busy"),
    ({"error": "runner crashed"}, AppError, "runner crashed"),
    ({"content": "x", "surprise": 1}, BadGateway, "inference service sent an invalid CompletionEvent"),
])
def test_error_lines_and_foreign_events_are_typed_errors(line: dict, error: type, message: str) -> None:
    client = _wired(InferenceClient("http://unused"), lambda _request: _ndjson({"content": "a"}, line))
    with pytest.raises(error, match=message) as caught:
        asyncio.run(_all(client.complete(CompletionRequest(model=ENGINE), "rid")))
    assert caught.value.status == line.get("status", 502 if error is BadGateway else 500)


def test_a_404_from_the_registry_stays_a_404_with_its_message() -> None:
    client = _wired(RegistryClient("http://unused"),
                    lambda _request: httpx.Response(404, json={"error": "model 'ghost' not found"}))
    with pytest.raises(NotFound, match="model 'ghost' not found"):
        asyncio.run(client.resolve("ghost", "rid"))


def test_pull_sends_the_name_and_insecure_only_and_relays_progress() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return _ndjson({"status": "pulling x", "digest": "sha256:ab", "total": 5, "completed": 0},
                       {"status": "success"})

    client = _wired(RegistryClient("http://unused"), handler)
    req = TransferRequest(name="m", insecure=True, stream=False, username="u", password="p")
    events = asyncio.run(_all(client.pull(req, "rid")))
    assert sent == [{"model": "m", "insecure": True}]
    assert [e.model_dump(exclude_unset=True) for e in events] == [
        {"status": "pulling x", "digest": "sha256:ab", "total": 5, "completed": 0}, {"status": "success"}]


def test_an_unreachable_service_is_a_502() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = _wired(RegistryClient("http://unused"), handler)
    with pytest.raises(BadGateway, match="registry service unavailable"):
        asyncio.run(client.list_models("rid"))


def test_pull_progress_reaches_the_caller_as_the_registry_sent_it() -> None:
    http = gateway(model())
    streamed = http.post("/api/pull", json={"model": "m"})
    assert streamed.text == ('{"status":"pulling a","digest":"sha256:a","total":3,"completed":0}\n'
                             '{"status":"success"}\n')
    assert http.post("/api/pull", json={"model": "m", "stream": False}).json() == {"status": "success"}
    assert http.post("/api/pull", json={"model": "ghost"}).json() == {"error": "model 'ghost' not found"}


class _Stalled(httpx.AsyncByteStream):
    """A stream that sends one line, then nothing (a model in a long prompt evaluation)."""

    async def __aiter__(self):
        yield b'{"content":"a"}\n'
        await asyncio.Event().wait()


def test_a_stream_still_waiting_when_the_grace_period_ends_is_cut_with_a_typed_error() -> None:
    shutdown = Shutdown()
    client = _wired(InferenceClient("http://unused", shutdown), lambda _request: httpx.Response(200, stream=_Stalled()))

    async def read() -> tuple[CompletionEvent, BaseException]:
        events = client.complete(CompletionRequest(model=ENGINE), "rid")
        first = await anext(events)
        asyncio.get_running_loop().call_later(0.05, shutdown.end_grace)
        with pytest.raises(ShuttingDown) as caught:
            await anext(events)
        return first, caught.value

    first, error = asyncio.run(read())
    assert first.content == "a" and (error.status, error.body()) == (503, {"error": "server shutting down"})
    with pytest.raises(ShuttingDown):  # and after the grace period nothing new waits on the service
        asyncio.run(_all(client.complete(CompletionRequest(model=ENGINE), "rid")))
