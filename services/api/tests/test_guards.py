"""Host and Origin rules of the edge guard (security.md OLL-1, OLL-2)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from corral_api.guards import EdgeGuard, host_allowed, origin_allowed
from corral_api.settings import DEFAULT_ORIGINS, ApiSettings

calls: list[str] = []


async def _handler(request):
    calls.append(request.method)
    return PlainTextResponse("ok")


def _client(loopback: bool = True, origins: tuple[str, ...] = DEFAULT_ORIGINS) -> TestClient:
    app = Starlette(routes=[Route("/x", _handler, methods=["GET", "POST"])])
    return TestClient(EdgeGuard(app, origins=origins, loopback=loopback), base_url="http://127.0.0.1:11434")


@pytest.mark.parametrize("host", ["localhost:11434", "127.0.0.1", "[::1]:11434", "foo.localhost", "box.local",
                                  "db.internal", "10.1.2.3:11434", "192.168.0.5", "0.0.0.0:11434", ""])
def test_allowed_hosts(host: str) -> None:
    assert host_allowed(host)


@pytest.mark.parametrize("host", ["rebind.attacker.test:11434", "example.com", "8.8.8.8", "localhost.evil.com"])
def test_refused_hosts(host: str) -> None:
    assert not host_allowed(host)


def test_rebinding_host_is_refused_only_on_loopback_listeners() -> None:
    assert _client().get("/x", headers={"Host": "evil.test"}).status_code == 403
    assert _client(loopback=False).get("/x", headers={"Host": "evil.test"}).status_code == 200


@pytest.mark.parametrize("origin, allowed", [
    ("http://localhost", True), ("http://localhost:3000", True), ("https://127.0.0.1:8443", True),
    ("app://obsidian.md", True), ("vscode-webview://abc", True), ("https://evil.example", False),
    ("chrome-extension://abc", False), ("http://localhost.evil.example", False),
])
def test_default_origins(origin: str, allowed: bool) -> None:
    assert origin_allowed(origin, "127.0.0.1:11434", DEFAULT_ORIGINS) is allowed


def test_disallowed_origin_never_reaches_the_handler() -> None:
    calls.clear()
    response = _client().post("/x", content="{}", headers={"Origin": "https://evil.example",
                                                          "Content-Type": "text/plain"})
    assert response.status_code == 403 and response.content == b"" and calls == []


def test_same_origin_as_host_is_not_cross_origin() -> None:
    assert _client().get("/x", headers={"Origin": "http://127.0.0.1:11434"}).status_code == 200


def test_ollama_origins_are_appended_to_defaults() -> None:
    settings = ApiSettings.from_env({"OLLAMA_ORIGINS": "https://app.example.com, chrome-extension://*"})
    assert "http://localhost" in settings.origins
    client = _client(origins=settings.origins)
    response = client.get("/x", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert client.get("/x", headers={"Origin": "chrome-extension://abc"}).status_code == 200


def test_preflight_answers_with_cors_headers() -> None:
    response = _client().options("/x", headers={"Origin": "http://localhost:5173",
                                                "Access-Control-Request-Method": "POST"})
    assert response.status_code == 204
    assert response.headers["access-control-max-age"] == "43200"
    assert "Authorization" in response.headers["access-control-allow-headers"]
