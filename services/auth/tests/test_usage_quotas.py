"""Usage accounting and quotas over HTTP: what the gateway reports, what /api/usage answers, and the 429s."""

from __future__ import annotations

import contextlib

import pytest
from starlette.testclient import TestClient

from corral_common.errors import BadRequest

from corral_auth.main import create_app
from corral_auth.limits import Quota


@pytest.fixture
def admin_key(http) -> str:
    return http.app.state.auth.accounts.bootstrap("root").key


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key(http, admin_key: str, user: str = "alice", **quota) -> dict:
    with contextlib.suppress(BadRequest):  # made by an earlier call
        http.app.state.auth.accounts.create_user(user)
    answer = http.post("/api/keys", json={"name": "k", "user": user, "scopes": ["inference", "models:read"], **quota},
                       headers=_bearer(admin_key))
    assert answer.status_code == 200, answer.text
    return answer.json()


def _verify(http, key: str, scope: str = "inference"):
    return http.post("/internal/verify", json={"authorization": f"Bearer {key}", "method": "POST",
                                               "uri": "/api/chat", "client": "1.2.3.4", "scope": scope})


def _used(http, key: dict, model: str = "m", prompt: int = 10, completion: int = 5) -> None:
    event = {"user": key["user"], "key_id": key["id"], "model": model, "prompt_tokens": prompt,
             "completion_tokens": completion}
    assert http.post("/internal/usage", json=event).status_code == 204


def test_usage_is_counted_per_user_key_model_and_hour(http, admin_key) -> None:
    alice = _key(http, admin_key)
    _used(http, alice)
    _used(http, alice, prompt=7, completion=3)
    _used(http, alice, model="other", prompt=1, completion=1)
    mine = http.get("/api/usage", headers=_bearer(alice["key"])).json()
    assert mine["total"] == {"requests": 3, "prompt_tokens": 18, "completion_tokens": 9}
    row = next(r for r in mine["usage"] if r["model"] == "m")
    assert (row["user"], row["key_id"], row["requests"], row["prompt_tokens"], row["completion_tokens"]) == \
        ("alice", alice["id"], 2, 17, 8)
    assert row["hour"].endswith(":00:00Z")


def test_users_see_their_own_usage_and_admins_everyones(http, admin_key) -> None:
    alice, bob = _key(http, admin_key), _key(http, admin_key, user="bob")
    _used(http, alice)
    _used(http, bob, prompt=100)
    assert http.get("/api/usage", headers=_bearer(bob["key"])).json()["total"]["prompt_tokens"] == 100
    assert http.get("/api/usage", params={"user": "alice"}, headers=_bearer(bob["key"])).status_code == 403
    everyone = http.get("/api/usage", headers=_bearer(admin_key)).json()
    assert {r["user"] for r in everyone["usage"]} == {"alice", "bob"}
    assert http.get("/api/usage", params={"user": "alice"}, headers=_bearer(admin_key)).json()["total"][
        "prompt_tokens"] == 10


def test_requests_per_minute_of_a_key_answers_429_naming_the_limit(http, admin_key) -> None:
    key = _key(http, admin_key, requests_per_minute=2)
    assert key["requests_per_minute"] == 2
    assert [_verify(http, key["key"]).status_code for _ in range(2)] == [200, 200]
    refused = _verify(http, key["key"])
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "2 requests per minute" in refused.json()["error"] and key["id"] in refused.json()["error"]
    assert _verify(http, key["key"], scope="models:read").status_code == 200  # only inference counts


def test_tokens_per_hour_of_a_user_answers_429_until_the_hour_turns(http, admin_key) -> None:
    key = _key(http, admin_key)
    answer = http.put("/api/quotas/alice", json={"tokens_per_hour": 20}, headers=_bearer(admin_key))
    assert answer.json() == {"user": "alice", "tokens_per_hour": 20, "requests_per_minute": None}
    assert _verify(http, key["key"]).status_code == 200
    _used(http, key, prompt=15, completion=5)
    refused = _verify(http, key["key"])
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 3600
    assert "20 tokens per hour" in refused.json()["error"] and "'alice'" in refused.json()["error"]
    assert http.put("/api/quotas/alice", json={}, headers=_bearer(admin_key)).status_code == 200
    assert _verify(http, key["key"]).status_code == 200


def test_only_admins_set_quotas_and_values_are_checked(http, admin_key) -> None:
    alice = _key(http, admin_key)
    assert http.put("/api/quotas/alice", json={"tokens_per_hour": 5}, headers=_bearer(alice["key"])).status_code \
        == 403
    bad = http.put("/api/quotas/alice", json={"tokens_per_hour": -1}, headers=_bearer(admin_key))
    assert bad.status_code == 400 and "tokens_per_hour" in bad.json()["error"]
    assert http.put("/api/quotas/nobody", json={}, headers=_bearer(admin_key)).status_code == 404


def test_the_servers_default_quota_applies_to_every_user(settings_for, tmp_path) -> None:
    with TestClient(create_app(settings_for(tmp_path, quota=Quota(requests_per_minute=1)))) as http:
        admin = http.app.state.auth.accounts.bootstrap("root").key
        key = _key(http, admin)
        assert [_verify(http, key["key"]).status_code for _ in range(2)] == [200, 429]
        http.put("/api/quotas/alice", json={"requests_per_minute": 100}, headers=_bearer(admin))
        assert _verify(http, key["key"]).status_code == 200  # the user's own limit replaces the default
