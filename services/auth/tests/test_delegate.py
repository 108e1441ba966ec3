"""``Principal.delegate``: whom a key or a device is for, and which scopes the caller may hand out."""

from __future__ import annotations

import pytest

from corral_common.errors import BadRequest, Forbidden

from corral_auth import scopes
from corral_auth.identity import KEY, Principal


def _caller(admin: bool = False, held: tuple[str, ...] = scopes.DEFAULT) -> Principal:
    return Principal(user_id=1, user="alice", admin=admin, key_id="k", kind=KEY, scopes=held)


def test_defaults_are_the_caller_and_the_default_scopes() -> None:
    assert _caller().delegate(None, None, "theirs", "wide") == ("alice", scopes.DEFAULT)


def test_only_an_admin_acts_for_another_user() -> None:
    with pytest.raises(Forbidden, match="^theirs$"):
        _caller().delegate("bob", None, "theirs", "wide")
    assert _caller(admin=True).delegate("bob", ["web"], "theirs", "wide") == ("bob", ("web",))


def test_scopes_never_exceed_what_the_caller_holds() -> None:
    with pytest.raises(Forbidden, match="^wide$"):
        _caller(held=(scopes.INFERENCE,)).delegate(None, ["inference", "web"], "theirs", "wide")
    assert _caller(admin=True, held=()).delegate(None, ["admin"], "theirs", "wide") == ("alice", ("admin",))


def test_unknown_scopes_are_still_a_400() -> None:
    with pytest.raises(BadRequest, match="unknown scope 'root'"):
        _caller().delegate(None, ["root"], "theirs", "wide")
