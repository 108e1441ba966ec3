"""Fake registry and inference clients for gateway unit tests (never used by a server).

They have the typed clients' methods the routes call, so a test drives the real routes and services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.testclient import TestClient

from corral_common.errors import AppError, NotFound
from corral_common.internal import (CompletionEvent, CompletionRequest, ProgressEvent, ResolvedModel, TokenizeOutput,
                                    TokenizeRequest, TransferRequest)
from corral_common.schemas import ShowRequest

from corral_api.main import create_app
from corral_api.settings import ApiSettings

HELLO = [CompletionEvent(content="Hel"), CompletionEvent(content="lo"),
         CompletionEvent(done=True, done_reason="stop", prompt_eval_count=5, eval_count=2)]


def model(template: str = "{{ .Prompt }}", **fields: Any) -> ResolvedModel:
    """The store's resolved view of the one model ``m`` the fake registry knows."""
    base: dict[str, Any] = {"name": "registry.ollama.ai/library/m:latest", "short": "m:latest",
                            "model_digest": "a" * 64, "manifest_digest": "b" * 64, "capabilities": ["completion"],
                            "template": template}
    return ResolvedModel.model_validate({**base, **fields})


def native_chunk(content: str = "", thinking: str = "", calls: list | None = None, **final: Any) -> dict[str, Any]:
    """A native chat chunk as ``running.chat`` yields it; any ``final`` field (done_reason, counts) makes it the last."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if calls:
        message["tool_calls"] = calls
    return {"model": "m", "message": message, "done": bool(final), **final}


class FakeRegistry:
    """Knows one model (by its short name, with or without the tag); anything else is Ollama's 404."""

    def __init__(self, resolved: ResolvedModel) -> None:
        self.resolved = resolved

    def _known(self, name: str) -> ResolvedModel:
        if name not in (self.resolved.short, self.resolved.short.removesuffix(":latest")):
            raise NotFound(f"model '{name}' not found")
        return self.resolved

    async def resolve(self, name: str, request_id: str) -> ResolvedModel:
        return self._known(name)

    async def show(self, req: ShowRequest, request_id: str) -> dict[str, Any]:
        self._known(req.model_name())
        return {"modified_at": "2024-01-01T00:00:00Z"}

    async def pull(self, req: TransferRequest, request_id: str) -> AsyncIterator[ProgressEvent]:
        self._known(req.model_name())
        yield ProgressEvent.model_validate({"status": "pulling a", "digest": "sha256:a", "total": 3, "completed": 0})
        yield ProgressEvent(status="success")

    async def close(self) -> None:
        pass


class FakeInference:
    """Answers ``events`` ("Hel", "lo"), or fails before piece ``fail_after``; records the requests it got."""

    def __init__(self, fail_after: int | None = None, events: list[CompletionEvent] | None = None) -> None:
        self.fail_after = fail_after
        self.events = events or HELLO
        self.requests: list[CompletionRequest] = []
        self.tokenized: list[TokenizeRequest] = []

    async def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        self.requests.append(req)
        for i, event in enumerate(self.events):
            if i == self.fail_after:
                raise AppError("runner crashed")
            yield event

    async def tokenize(self, req: TokenizeRequest, request_id: str) -> TokenizeOutput:
        """One token per character of the rendered prompt."""
        self.tokenized.append(req)
        return TokenizeOutput(tokens=[ord(c) for c in req.text])

    async def close(self) -> None:
        pass


def gateway(resolved: ResolvedModel, inference: FakeInference | None = None) -> TestClient:
    """A gateway app on the loopback address whose registry and inference are the fakes."""
    app = create_app(ApiSettings.from_env({}))
    app.state.registry, app.state.inference = FakeRegistry(resolved), inference or FakeInference()
    return TestClient(app, base_url="http://127.0.0.1:11434")
