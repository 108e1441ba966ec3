"""A fake corral server on httpx.MockTransport: routes answer canned JSON/NDJSON and requests are recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from corral_cli.client import Client

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def ndjson(*chunks: dict[str, Any], status: int = 200) -> httpx.Response:
    """A streamed answer."""
    body = "".join(json.dumps(chunk) + "\n" for chunk in chunks).encode()
    return httpx.Response(status, content=body, headers={"Content-Type": "application/x-ndjson"})


def error(status: int, message: str) -> httpx.Response:
    """An Ollama-style error body."""
    return httpx.Response(status, json={"error": message})


@dataclass
class Recorded:
    method: str
    path: str
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeServer:
    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Answer) -> None:
        """Answer ``method path`` with each answer in turn (the last one repeats)."""
        self.routes[(method, path)] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append(Recorded(request.method, request.url.path, request.headers, body))
        answers = self.routes.get((request.method, request.url.path))
        if answers is None:
            if (request.method, request.url.path) == ("HEAD", "/"):
                return httpx.Response(200)
            return httpx.Response(404, text="404 page not found")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(answer):
            return answer(request)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    ndjson = staticmethod(ndjson)
    error = staticmethod(error)

    def client(self) -> Client:
        return Client("http://corral.test:11434", transport=httpx.MockTransport(self.handle))

    def sent(self, method: str, path: str) -> list[Recorded]:
        """The recorded requests to ``method path``."""
        return [r for r in self.requests if (r.method, r.path) == (method, path)]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()
