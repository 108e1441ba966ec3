"""The gateway's key enforcement (security.md §5, OLL-18) against a fake auth service."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from corral_api.auth import (ADMIN, EXEMPT, INFERENCE, MODELS_READ, MODELS_WRITE, REGISTRY, SELF, WEB,
                             GatewayAuthSettings, _networks, client_address, route_rule)
from corral_api.main import create_app
from corral_api.settings import ApiSettings
from corral_common.env import HostPort

GOOD = "olk_good"
READER = "olk_reader"
INFER = "olk_infer"


class FakeAuth:
    """Answers /internal/verify like the auth service, and records audit events."""

    def __init__(self) -> None:
        self.verified: list[dict] = []
        self.audited: list[dict] = []
        self.app = Starlette(routes=[Route("/internal/verify", self.verify, methods=["POST"]),
                                     Route("/internal/audit", self.audit, methods=["POST"])])

    async def verify(self, request: Request) -> Response:
        body = await request.json()
        self.verified.append(body)
        token = (body.get("authorization") or "").removeprefix("Bearer ")
        if token == GOOD or (token, body["scope"]) in {(READER, MODELS_READ), (INFER, INFERENCE)}:
            return JSONResponse({"user": "root", "key_id": token, "kind": "key", "scopes": []})
        if token in (READER, INFER):
            return JSONResponse({"error": "forbidden: scope"}, 403,
                                {"WWW-Authenticate": 'Bearer realm="corral", error="insufficient_scope"'})
        return JSONResponse({"error": "unauthorized: missing or invalid API key"}, 401,
                            {"WWW-Authenticate": 'Bearer realm="corral"'})

    async def audit(self, request: Request) -> Response:
        self.audited.append(await request.json())
        return Response(status_code=204)


def _gateway(fake: FakeAuth | None, mode: str = "auto", peer: str = "127.0.0.1") -> Iterator[TestClient]:
    settings = ApiSettings(listen=HostPort("http", "127.0.0.1", 11434), inference_url="http://127.0.0.1:9",
                           registry_url="http://127.0.0.1:9")
    auth = GatewayAuthSettings(auth_url="http://127.0.0.1:9", mode=mode, trusted_proxies=_networks("127.0.0.1"))
    with TestClient(create_app(settings, auth), client=(peer, 40000), base_url="http://127.0.0.1:11434") as client:
        if fake is not None:
            client.app.state.auth.http.client = httpx.AsyncClient(transport=httpx.ASGITransport(fake.app),
                                                                  base_url="http://auth")
        yield client


@pytest.fixture
def fake() -> FakeAuth:
    return FakeAuth()


@pytest.fixture
def gateway(fake) -> Iterator[TestClient]:
    yield from _gateway(fake)


REMOTE = {"X-Forwarded-For": "203.0.113.5"}


@pytest.mark.parametrize("path, rule", [
    ("/", EXEMPT), ("/api/version", EXEMPT), ("/api/chat", INFERENCE), ("/v1/chat/completions", INFERENCE),
    ("/api/tags", MODELS_READ), ("/api/show", MODELS_READ), ("/api/pull", MODELS_WRITE),
    ("/api/blobs/sha256:ab", MODELS_WRITE), ("/api/experimental/web_search", WEB), ("/api/keys", SELF),
    ("/api/keys/abc", SELF), ("/api/me", SELF), ("/token", SELF), ("/v2/library/m/manifests/latest", REGISTRY),
    ("/api/grants", SELF), ("/api/grants/3", SELF), ("/v1/models", MODELS_READ),
    ("/v1/models/smollm2:135m", MODELS_READ), ("/v1/embeddings", INFERENCE),
    ("/api/something-new", ADMIN), ("/debug", ADMIN),
])
def test_route_rules(path, rule) -> None:
    assert route_rule(path) == rule


@pytest.mark.parametrize("peer, forwarded, expected", [
    ("127.0.0.1", None, ("127.0.0.1", True)),
    ("10.0.0.7", None, ("10.0.0.7", False)),
    ("127.0.0.1", "203.0.113.5", ("203.0.113.5", False)),  # trusted proxy names the client
    ("127.0.0.1", "198.51.100.1, 203.0.113.5", ("203.0.113.5", False)),  # right-most untrusted hop wins
    ("::1", "203.0.113.5", ("::1", False)),  # an untrusted local proxy never makes a remote client local
    (None, None, ("", True)),  # a Unix socket: local
    (None, "203.0.113.5", ("", False)),  # ... unless a proxy forwarded the request through it
])
def test_client_address(peer, forwarded, expected) -> None:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"client": (peer, 1) if peer else None, "headers": headers}
    assert client_address(scope, _networks("127.0.0.1")) == expected


def test_modes_from_environment() -> None:
    assert GatewayAuthSettings.from_env({}).mode == "auto"
    assert GatewayAuthSettings.from_env({"CORRAL_AUTH_REQUIRED": "1"}).mode == "always"
    assert GatewayAuthSettings.from_env({"CORRAL_AUTH_REQUIRED": "false"}).mode == "off"
    assert GatewayAuthSettings(mode="auto").required_for(False) and not GatewayAuthSettings().required_for(True)
    assert GatewayAuthSettings(mode="always").required_for(True)
    assert not GatewayAuthSettings(mode="off").required_for(False)


def test_loopback_needs_no_key_and_never_reaches_the_auth_service(gateway, fake) -> None:
    assert gateway.get("/api/tags").status_code == 502  # past the gate; no model store in this test
    assert fake.verified == []


def test_remote_without_key_gets_401_with_www_authenticate(gateway) -> None:
    answer = gateway.get("/api/tags", headers=REMOTE)
    assert answer.status_code == 401 and answer.json() == {"error": "unauthorized: missing or invalid API key"}
    assert answer.headers["www-authenticate"] == 'Bearer realm="corral"'
    assert gateway.get("/api/version", headers=REMOTE).status_code == 200


def test_remote_with_key_passes_and_is_audited(gateway, fake) -> None:
    answer = gateway.post("/api/chat", json={"model": "smollm2:135m", "messages": []},
                          headers={**REMOTE, "Authorization": f"Bearer {GOOD}"})
    assert answer.status_code == 502  # past the gate
    assert fake.verified[-1]["scope"] == INFERENCE and fake.verified[-1]["client"] == "203.0.113.5"
    assert fake.verified[-1]["uri"] == "/api/chat"
    gateway.get("/api/version")  # let the background audit task run
    assert fake.audited and fake.audited[-1] == {"user": "root", "key_id": GOOD, "client": "203.0.113.5",
                                                 "method": "POST", "route": "/api/chat", "status": 502,
                                                 "model": "smollm2:135m"}


def test_missing_scope_is_403_and_openai_paths_get_openai_errors(gateway) -> None:
    answer = gateway.post("/api/pull", json={"model": "x"}, headers={**REMOTE, "Authorization": f"Bearer {READER}"})
    assert answer.status_code == 403 and "insufficient_scope" in answer.headers["www-authenticate"]
    openai = gateway.post("/v1/chat/completions", json={}, headers={**REMOTE, "Authorization": f"Bearer {READER}"})
    assert openai.status_code == 403
    assert openai.json()["error"]["type"] == "permission_error" and openai.json()["error"]["code"]
    bad = gateway.get("/v1/models", headers={**REMOTE, "Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


def test_key3_an_inference_key_lists_models_through_neither_api(gateway, fake) -> None:
    headers = {**REMOTE, "Authorization": f"Bearer {INFER}"}
    for path in ("/v1/models", "/v1/models/smollm2:135m", "/api/tags"):
        answer = gateway.get(path, headers=headers)
        assert answer.status_code == 403, path
        assert fake.verified[-1]["scope"] == MODELS_READ
    assert gateway.get("/v1/models", headers=headers).json()["error"]["type"] == "permission_error"
    assert gateway.post("/v1/chat/completions", json={}, headers=headers).status_code != 403


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key"])
@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/token", "/"])
def test_key1_two_credential_headers_are_refused(gateway, fake, name, path) -> None:
    headers = [(name, f"Bearer {GOOD}"), (name, "Bearer olk_other"), ("X-Forwarded-For", "203.0.113.5")]
    answer = gateway.get(path, headers=headers)
    assert answer.status_code == 400
    message = answer.json()["error"]["message"] if path.startswith("/v1/") else answer.json()["error"]
    assert f"more than one {name.lower()} header" in message
    assert fake.verified == []


def test_required_mode_applies_to_loopback_too(fake) -> None:
    for client in _gateway(fake, mode="always"):
        assert client.get("/api/tags").status_code == 401
        assert client.get("/", ).status_code == 200


def test_off_mode_lets_remote_clients_through(fake) -> None:
    for client in _gateway(fake, mode="off", peer="10.0.0.8"):
        assert client.get("/api/tags").status_code == 502


def test_auth_service_down_fails_closed() -> None:
    for client in _gateway(None):
        answer = client.get("/api/tags", headers={**REMOTE, "Authorization": f"Bearer {GOOD}"})
        assert answer.status_code == 503
