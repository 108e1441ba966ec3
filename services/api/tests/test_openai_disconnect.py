"""Issue 18 item 2 (resource exhaustion): a client that leaves a non-streamed /v1 request cancels the generation
behind it, as it does on the native routes, instead of leaving the slot busy until the answer is complete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from corral_common.internal import CompletionEvent, CompletionRequest

from corral_api.testing import FakeInference, gateway, model

ASK = [{"role": "user", "content": "hi"}]
BODIES = {
    "/v1/chat/completions": {"model": "m", "messages": ASK},
    "/v1/completions": {"model": "m", "prompt": "hi"},
    "/v1/responses": {"model": "m", "input": "hi"},
    "/api/generate": {"model": "m", "prompt": "hi", "stream": False},
}


class Endless(FakeInference):
    """Generates one piece, then waits forever; records when its generation was cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.cancelled = asyncio.Event(), asyncio.Event()

    async def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        self.requests.append(req)
        try:
            yield CompletionEvent(content="Hel")
            self.started.set()
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()


async def _leave_after_start(path: str, body: dict) -> tuple[Endless, list[dict]]:
    """Send the request as raw ASGI, disconnect once generation has started, and return what was sent back."""
    inference = Endless()
    app = gateway(model(), inference).app
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await inference.started.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "path": path,
             "raw_path": path.encode(), "query_string": b"", "root_path": "", "scheme": "http",
             "headers": [(b"host", b"127.0.0.1:11434"), (b"content-type", b"application/json")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 11434)}
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    await asyncio.wait_for(inference.cancelled.wait(), timeout=1)
    return inference, sent


@pytest.mark.parametrize("path", list(BODIES))
def test_resource_exhaustion_a_client_leaving_a_non_streamed_request_cancels_its_generation(path: str) -> None:
    inference, sent = asyncio.run(_leave_after_start(path, BODIES[path]))
    assert inference.cancelled.is_set()
    assert not any(m.get("body", b"").startswith(b'{"id"') for m in sent)  # no answer was completed
