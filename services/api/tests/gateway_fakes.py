"""Fake model store and inference clients for gateway unit tests (never used by a server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.testclient import TestClient

from corral_common.errors import AppError, NotFound

from corral_api.main import create_app
from corral_api.settings import ApiSettings


def model(template: str = "{{ .Prompt }}") -> dict[str, Any]:
    """The store's resolved view of the one model ``m`` the fake store knows."""
    return {"name": "registry.ollama.ai/library/m:latest", "short": "m:latest", "model_digest": "a" * 64,
            "manifest_digest": "b" * 64, "adapters": [], "details": {}, "capabilities": ["completion"],
            "template": template, "params": {}, "messages": []}


class FakeStore:
    """Knows the model ``m`` only; anything else is Ollama's 404."""

    def __init__(self, resolved: dict[str, Any]) -> None:
        self.resolved = resolved

    async def json(self, method: str, path: str, request_id: str, body: Any = None) -> Any:
        if body and body.get("model") != "m":
            raise NotFound(f"model '{body.get('model')}' not found")
        if path == "/store/show":
            return {"modified_at": "2024-01-01T00:00:00Z"}
        return self.resolved


class FakeInference:
    """Answers "Hel", "lo" (or fails before piece ``fail_after``) and records the bodies it was sent."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.fail_after = fail_after
        self.bodies: list[dict[str, Any]] = []

    async def stream(self, path: str, request_id: str, body: Any) -> AsyncIterator[dict[str, Any]]:
        self.bodies.append(body)
        for i, piece in enumerate(["Hel", "lo"]):
            if i == self.fail_after:
                raise AppError("runner crashed")
            yield {"content": piece, "done": False}
        yield {"content": "", "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2}


def gateway(resolved: dict[str, Any], inference: FakeInference | None = None) -> TestClient:
    """A gateway app on the loopback address whose store and inference are the fakes."""
    app = create_app(ApiSettings.from_env({}))
    app.state.store, app.state.inference = FakeStore(resolved), inference or FakeInference()
    return TestClient(app, base_url="http://127.0.0.1:11434")
