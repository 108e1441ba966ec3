"""Users and API keys: scopes, expiry, revocation, last_used_at, and no secret in the database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from corral_common.errors import BadRequest, Forbidden, NotFound

from corral_auth.identity import KEY, Principal


def _admin(runtime) -> tuple[Principal, str]:
    key = runtime.accounts.bootstrap("root").key
    return runtime.accounts.identify(key), key


def test_bootstrap_creates_one_admin_with_every_scope(runtime) -> None:
    admin, _ = _admin(runtime)
    assert admin.admin and admin.user == "root" and admin.kind == KEY
    assert set(admin.scopes) == {"inference", "models:read", "models:write", "web", "admin"}
    with pytest.raises(BadRequest, match="already bootstrapped"):
        runtime.accounts.bootstrap("other")


def test_user_names_are_namespaces(runtime) -> None:
    runtime.accounts.create_user("alice")
    for bad in ("Alice", "a/b", "", "x" * 81, "../etc"):
        with pytest.raises(BadRequest):
            runtime.accounts.create_user(bad)
    with pytest.raises(BadRequest, match="exists"):
        runtime.accounts.create_user("alice")


def test_key_carries_only_its_scopes(runtime) -> None:
    admin, _ = _admin(runtime)
    runtime.accounts.create_user("alice")
    issued = runtime.accounts.create_key(admin, "ci", ["inference"], None, user="alice")
    principal = runtime.accounts.identify(issued.key)
    assert principal.user == "alice" and principal.scopes == ("inference",) and not principal.admin
    assert issued.wire()["id"] == principal.key_id and issued.wire()["key"] == issued.key
    with pytest.raises(BadRequest, match="unknown scope"):
        runtime.accounts.create_key(admin, "x", ["root"], None)


def test_default_scopes_exclude_admin(runtime) -> None:
    admin, _ = _admin(runtime)
    issued = runtime.accounts.create_key(admin, "default", None, None)
    assert "admin" not in runtime.accounts.identify(issued.key).scopes


def test_users_manage_only_their_own_keys_and_cannot_escalate(runtime) -> None:
    admin, _ = _admin(runtime)
    runtime.accounts.create_user("alice")
    runtime.accounts.create_user("bob")
    alice = runtime.accounts.identify(runtime.accounts.create_key(admin, "a", ["admin", "inference"], None,
                                                                  user="alice").key)
    bob_key = runtime.accounts.create_key(admin, "b", ["inference"], None, user="bob")
    mine = runtime.accounts.create_key(alice, "mine", ["inference"], None)
    assert [k["id"] for k in runtime.accounts.list_keys(alice)] == [alice.key_id, mine.info["id"]]
    with pytest.raises(Forbidden):
        runtime.accounts.create_key(alice, "more", ["models:write"], None)
    with pytest.raises(Forbidden):
        runtime.accounts.create_key(alice, "for-bob", ["inference"], None, user="bob")
    with pytest.raises(Forbidden):
        runtime.accounts.list_keys(alice, user="bob")
    with pytest.raises(NotFound):  # someone else's key looks like a missing one
        runtime.accounts.revoke_key(alice, bob_key.info["id"])
    assert len(runtime.accounts.list_keys(admin)) == 4


def test_revocation_is_effective_at_once(runtime) -> None:
    admin, _ = _admin(runtime)
    issued = runtime.accounts.create_key(admin, "short", ["inference"], None)
    assert runtime.accounts.identify(issued.key) is not None
    runtime.accounts.revoke_key(admin, issued.info["id"])
    assert runtime.accounts.identify(issued.key) is None
    listed = {k["id"]: k for k in runtime.accounts.list_keys(admin)}
    assert listed[issued.info["id"]]["revoked_at"] is not None


def test_expired_keys_stop_working(runtime) -> None:
    admin, _ = _admin(runtime)
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    issued = runtime.accounts.create_key(admin, "soon", ["inference"], soon)
    assert runtime.accounts.identify(issued.key) is not None
    with runtime.engine.begin() as db:  # let it lapse without sleeping
        db.exec_driver_sql("UPDATE auth_api_keys SET expires_at = '2000-01-01 00:00:00' WHERE id = ?",
                           (issued.info["id"],))
    assert runtime.accounts.identify(issued.key) is None
    for bad in ("yesterday", "2000-01-01T00:00:00Z"):
        with pytest.raises(BadRequest):
            runtime.accounts.create_key(admin, "x", ["inference"], bad)


def test_last_used_at_is_recorded(runtime) -> None:
    admin, _ = _admin(runtime)
    issued = runtime.accounts.create_key(admin, "used", ["inference"], None)
    assert runtime.accounts.list_keys(admin)[-1]["last_used_at"] is None
    runtime.accounts.identify(issued.key)
    assert runtime.accounts.list_keys(admin)[-1]["last_used_at"] is not None


def test_wrong_secret_and_unknown_id_are_both_none(runtime) -> None:
    admin, key = _admin(runtime)
    prefix, key_id, _secret, _check = key.split("_")
    from corral_auth import apikeys

    assert runtime.accounts.identify(apikeys.issue(key_id)) is None  # right id, wrong secret
    assert runtime.accounts.identify(apikeys.issue("Unknown1")) is None
    assert runtime.accounts.identify("not a key") is None


def test_database_never_contains_an_issued_secret(runtime, settings) -> None:
    admin, key = _admin(runtime)
    issued = [runtime.accounts.create_key(admin, f"k{i}", ["inference"], None).key for i in range(3)]
    runtime.close()
    dump = "\n".join(sqlite3.connect(settings.home / "auth.sqlite").iterdump())
    for secret in [key, *issued]:
        assert secret.split("_")[1] in dump  # the public id is there, for lookup
        assert secret not in dump and secret.split("_")[2] not in dump
