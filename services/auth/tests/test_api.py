"""The auth service over HTTP: the endpoints the gateway relays, with their status codes and headers."""

from __future__ import annotations

import pytest

from corral_auth.signatures import api_message


@pytest.fixture
def admin_key(http) -> str:
    """The first admin's key, bootstrapped in the running app's database."""
    return http.app.state.auth.accounts.bootstrap("root").key


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_keys_create_list_revoke(http, admin_key) -> None:
    created = http.post("/api/keys", json={"name": "ci", "scopes": ["inference"]}, headers=_bearer(admin_key))
    assert created.status_code == 200
    body = created.json()
    assert body["key"].startswith(f"olk_{body['id']}_") and body["scopes"] == ["inference"]
    listed = http.get("/api/keys", headers=_bearer(admin_key)).json()["keys"]
    assert {k["id"] for k in listed} >= {body["id"]} and all("key" not in k for k in listed)
    assert http.delete(f"/api/keys/{body['id']}", headers=_bearer(admin_key)).status_code == 200
    verify = {"authorization": f"Bearer {body['key']}", "method": "POST", "uri": "/api/chat", "client": "1.2.3.4",
              "scope": "inference"}
    assert http.post("/internal/verify", json=verify).status_code == 401


def test_key_endpoints_need_the_admin_scope(http, admin_key) -> None:
    plain = http.post("/api/keys", json={"name": "p", "scopes": ["inference"]}, headers=_bearer(admin_key)).json()
    answer = http.get("/api/keys", headers=_bearer(plain["key"]))
    assert answer.status_code == 403 and 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    missing = http.get("/api/keys")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="corral"'


def test_verify_answers_the_principal(http, admin_key) -> None:
    answer = http.post("/internal/verify", json={"authorization": f"Bearer {admin_key}", "method": "GET",
                                                 "uri": "/api/tags", "client": "1.2.3.4", "scope": "models:read"})
    assert answer.status_code == 200
    assert answer.json() == {"user": "root", "admin": True, "key_id": admin_key.split("_")[1], "kind": "key",
                             "scopes": ["inference", "models:read", "models:write", "web", "admin"]}
    x_api_key = http.post("/internal/verify", json={"api_key": admin_key, "method": "GET", "uri": "/v1/models",
                                                    "client": "1.2.3.4", "scope": "inference"})
    assert x_api_key.status_code == 200


def test_signin_flow_over_http(http, admin_key, device) -> None:
    def signed(path: str, body: dict) -> object:
        uri = device.uri(path)
        return http.post(uri, json=body, headers={"Authorization": device.sign(api_message("POST", uri))})

    assert signed("/api/me", {}).status_code == 401
    started = signed("/api/signin", {"name": "laptop"}).json()
    assert started["status"] == "pending" and len(started["code"]) == 9
    assert signed("/api/signin", {"poll": True}).json() == {"status": "pending"}
    approved = http.post("/api/signin/approve", json={"code": started["code"]}, headers=_bearer(admin_key))
    assert approved.status_code == 200 and approved.json()["name"] == "root"
    again = http.post("/api/signin/approve", json={"code": started["code"]}, headers=_bearer(admin_key))
    assert again.status_code == 404  # one-time
    assert signed("/api/signin", {"poll": True}).json() == {"status": "signed_in", "name": "root"}
    me = signed("/api/me", {})
    assert me.status_code == 200 and me.json()["name"] == "root" and me.json()["key_id"].startswith("ssh:")
    assert signed("/api/signout", {}).json() == {"status": "signed_out"}
    assert signed("/api/me", {}).status_code == 401


def test_signin_start_must_be_signed(http) -> None:
    assert http.post("/api/signin", json={"name": "x"}).status_code == 400


def test_token_and_jwks(http, admin_key) -> None:
    jwks = http.get("/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]
    answer = http.get("/token", params={"service": "corral", "scope": "repository:root/m:pull,push"},
                      headers=_bearer(admin_key))
    assert answer.status_code == 200 and answer.json()["expires_in"] == 300
    assert http.get("/token", params={"scope": "repository:root/m:push"},
                    headers=_bearer("olk_bad")).status_code == 401


@pytest.mark.parametrize("mode, status", [("always", 401), ("off", 200)])
def test_key1_anonymous_token_over_http(http, mode, status) -> None:
    http.app.state.auth.registry.auth_mode = mode
    answer = http.get("/token", params={"service": "svc", "scope": "repository:library/m:pull"},
                      headers={"X-Corral-Client": "127.0.0.1"})
    assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"] == 'Bearer realm="corral"' and "token" not in answer.json()
    else:
        assert answer.json()["token"]


def test_audit_roundtrip(http) -> None:
    event = {"client": "1.2.3.4", "method": "POST", "route": "/api/chat", "status": 200, "user": "root",
             "key_id": "abc", "model": "smollm2:135m"}
    assert http.post("/internal/audit", json=event).status_code == 204
    assert http.get("/internal/audit").json()["events"][0]["model"] == "smollm2:135m"


@pytest.mark.parametrize("query", ["hours=a:b:c", "hours=1.5", "hours="])
def test_input_validation_a_query_parameter_that_does_not_parse_is_a_400_naming_it(http, admin_key, query) -> None:
    """Issue 18 item 8: FastAPI's own 422 ``{"detail": [...]}`` is Ollama's 400 ``{"error": "..."}``."""
    answer = http.get(f"/api/usage?{query}", headers=_bearer(admin_key))
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid query parameter 'hours': Input should be a valid integer, unable to "
                                      "parse string as an integer"}
