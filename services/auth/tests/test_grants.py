"""``/api/grants`` over HTTP, and what a grant changes in the registry tokens issued afterwards."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient


@pytest.fixture
def keys(http) -> dict[str, str]:
    """Keys of root and of alice, bob and carol (users), made in the running app; alice/secret is private."""
    runtime = http.app.state.auth
    root = runtime.accounts.bootstrap("root")
    admin = runtime.accounts.identify(root.key)
    out = {"root": root.key}
    for name in ("alice", "bob", "carol"):
        runtime.accounts.create_user(name)
        out[name] = runtime.accounts.create_key(admin, name, None, None, user=name).key
    runtime.policy.set_private("alice/secret")
    return out


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _actions(http: TestClient, key: str, scope: str) -> list[str]:
    token = http.get("/token", params={"service": "svc", "scope": scope}, headers=_as(key)).json()["token"]
    return http.app.state.auth.tokens.verify(token, "svc")["access"][0]["actions"]


def test_the_owner_grants_a_private_pull(http, keys) -> None:
    assert _actions(http, keys["bob"], "repository:alice/secret:pull") == []
    added = http.post("/api/grants", json={"repository": "alice/secret", "user": "bob"}, headers=_as(keys["alice"]))
    assert added.status_code == 200, added.text
    assert added.json() == {"id": added.json()["id"], "repository": "alice/secret", "user": "bob", "actions": ["pull"]}
    assert _actions(http, keys["bob"], "repository:alice/secret:pull") == ["pull"]
    assert _actions(http, keys["carol"], "repository:alice/secret:pull") == []


def test_a_push_grant_lets_another_user_push(http, keys) -> None:
    assert _actions(http, keys["bob"], "repository:alice/shared:pull,push") == ["pull"]
    body = {"repository": "alice/shared", "user": "bob", "actions": ["pull", "push"]}
    assert http.post("/api/grants", json=body, headers=_as(keys["alice"])).status_code == 200
    assert _actions(http, keys["bob"], "repository:alice/shared:pull,push") == ["pull", "push"]


def test_only_the_owner_or_an_admin_manages_grants(http, keys) -> None:
    body = {"repository": "alice/secret", "user": "bob"}
    assert http.post("/api/grants", json=body, headers=_as(keys["bob"])).status_code == 403
    assert http.post("/api/grants", json=body).status_code == 401
    assert http.post("/api/grants", json=body, headers=_as(keys["root"])).status_code == 200
    assert http.get("/api/grants", headers=_as(keys["carol"])).json() == {"grants": []}
    assert [g["user"] for g in http.get("/api/grants", headers=_as(keys["alice"])).json()["grants"]] == ["bob"]


def test_bad_grants_are_400(http, keys) -> None:
    for body in ({"repository": "alice/secret", "user": "bob", "actions": ["delete"]},
                 {"repository": "../x", "user": "bob"}, {"repository": "alice/secret", "user": "nobody"}):
        assert http.post("/api/grants", json=body, headers=_as(keys["alice"])).status_code == 400, body


def test_revoking_a_grant_takes_effect_at_once(http, keys) -> None:
    added = http.post("/api/grants", json={"repository": "alice/secret", "user": "bob"}, headers=_as(keys["alice"]))
    grant_id = added.json()["id"]
    assert http.delete(f"/api/grants/{grant_id}", headers=_as(keys["carol"])).status_code == 404
    assert http.delete(f"/api/grants/{grant_id}", headers=_as(keys["alice"])).status_code == 200
    assert _actions(http, keys["bob"], "repository:alice/secret:pull") == []
    assert http.delete(f"/api/grants/{grant_id}", headers=_as(keys["alice"])).status_code == 404


@pytest.mark.parametrize("grant_id", ["9" * 30, str(2**63), "0"])
def test_input_validation_a_grant_id_no_row_can_have_is_a_404(http, keys, grant_id: str) -> None:
    """Issue 18 item 8: an id past SQL's 64-bit integers was a bare 500 (the database driver overflowed)."""
    answer = TestClient(http.app, raise_server_exceptions=False).delete(f"/api/grants/{grant_id}",
                                                                        headers=_as(keys["root"]))
    assert answer.status_code == 404 and answer.json() == {"error": f"grant {int(grant_id)} not found"}
