"""The auth service's typed client: refusals relayed with their headers, owned routes relayed as they came."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from starlette.requests import Request

from corral_api.clients import CLIENT_STATE, AuthClient, Denial

Handler = Callable[[httpx.Request], httpx.Response]


def _wired(handler: Handler) -> AuthClient:
    client = AuthClient("http://unused")
    client.http.client = httpx.AsyncClient(base_url="http://auth", transport=httpx.MockTransport(handler))
    return client


def _request(method: str, path: str, query: bytes = b"", body: bytes = b"{}",
             headers: dict[str, str] | None = None) -> Request:
    """A gateway request as the relay sees it (the gate already stored the client's address)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body}

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()], "client": ("10.0.0.9", 1),
             "server": ("gw", 11434), "scheme": "http", "state": {CLIENT_STATE: "203.0.113.5", "request_id": "rid"}}
    return Request(scope, receive)


def test_the_auth_client_keeps_its_own_timeouts() -> None:
    timeout = AuthClient("http://auth").http.client.timeout
    assert (timeout.connect, timeout.read) == (3.0, 10.0)


def test_verify_returns_the_principal_or_the_refusal_with_its_headers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert request.url.path == "/internal/verify" and request.headers["x-request-id"] == "rid"
        if body["api_key"] == "good":
            return httpx.Response(200, json={"user": "root"})
        return httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "3", "X-Other": "no"})

    client = _wired(handler)
    assert asyncio.run(client.verify({"api_key": "good"}, "rid")) == {"user": "root"}
    assert asyncio.run(client.verify({"api_key": "bad"}, "rid")) == Denial(429, "slow down", {"retry-after": "3"})


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize("handler", [lambda _request: httpx.Response(500, text="boom"), _refused])
def test_verify_fails_closed_when_the_auth_service_fails(handler: Handler) -> None:
    assert asyncio.run(_wired(handler).verify({}, "rid")) == Denial(503, "auth service unavailable", {})


def test_relay_forwards_credential_address_and_uri_and_keeps_only_safe_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, content=b'{"id":"k1"}', headers={"content-type": "application/json",
                                                                     "set-cookie": "x=1"})

    request = _request("GET", "/api/keys", b"user=bob", headers={"authorization": "Bearer olk", "cookie": "c"})
    answer = asyncio.run(_wired(handler).keys(request))
    sent = seen[0]
    assert (sent.url.path, sent.url.query) == ("/api/keys", b"user=bob")
    assert sent.headers["authorization"] == "Bearer olk" and "cookie" not in sent.headers
    assert sent.headers["x-corral-client"] == "203.0.113.5"
    assert sent.headers["x-corral-original-uri"] == "/api/keys?user=bob"
    assert (answer.status_code, answer.body) == (201, b'{"id":"k1"}') and "set-cookie" not in answer.headers


@pytest.mark.parametrize(("call", "path"), [
    (lambda auth, request: auth.revoke_key(request, "abc"), "/api/keys/abc"),
    (lambda auth, request: auth.revoke_grant(request, "7"), "/api/grants/7"),
    (lambda auth, request: auth.grants(request), "/api/grants"),
    (lambda auth, request: auth.account(request), "/api/signin/approve"),
    (lambda auth, request: auth.token(request), "/token"),
    (lambda auth, request: auth.jwks(request), "/jwks.json"),
])
def test_each_relayed_route_has_its_auth_service_path(call, path: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200)

    asyncio.run(call(_wired(handler), _request("POST", "/api/signin/approve")))
    assert seen == [path]


def test_relay_to_an_unreachable_auth_service_is_a_503() -> None:
    answer = asyncio.run(_wired(_refused).keys(_request("GET", "/api/keys")))
    assert (answer.status_code, answer.body) == (503, b'{"error": "auth service unavailable"}')
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
