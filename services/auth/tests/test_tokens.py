"""Registry tokens: push only into one's own namespace, private pulls need a grant, JWTs verify via JWKS."""

from __future__ import annotations

import time

import pytest
import warnings

from corral_common.errors import BadRequest

from corral_auth.errors import Unauthenticated
from corral_auth.identity import Credential
from corral_auth.signatures import token_message
from corral_auth.tokens import parse_scope


@pytest.fixture
def people(runtime):
    admin = runtime.accounts.identify(runtime.accounts.bootstrap("root").key)
    for name in ("alice", "bob"):
        runtime.accounts.create_user(name)
    keys = {name: runtime.accounts.create_key(admin, name, None, None, user=name).key for name in ("alice", "bob")}
    return {**keys, "root": admin}


def _token(runtime, key: str | None, *scopes: str) -> dict:
    credential = Credential.from_headers(f"Bearer {key}" if key else None, None, "GET", "/token")
    answer = runtime.registry.answer(credential, "127.0.0.1", "http://h/token", "corral-registry", list(scopes))
    return runtime.tokens.verify(answer["token"], "corral-registry")


def test_push_to_own_namespace_only(runtime, people) -> None:
    claims = _token(runtime, people["alice"], "repository:alice/m:pull,push", "repository:bob/m:pull,push")
    assert claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": "alice/m", "actions": ["pull", "push"]},
                                {"type": "repository", "name": "bob/m", "actions": ["pull"]}]


def test_anonymous_gets_public_pulls_only(runtime, people) -> None:
    assert _token(runtime, None, "repository:alice/m:pull,push")["access"][0]["actions"] == ["pull"]


@pytest.mark.parametrize("mode, client, allowed", [
    ("always", "127.0.0.1", False), ("auto", "203.0.113.5", False), ("auto", "127.0.0.1", True),
    ("off", "203.0.113.5", True),
])
def test_key1_anonymous_token_only_where_auth_is_off(runtime, mode, client, allowed) -> None:
    runtime.registry.auth_mode = mode
    anonymous = Credential.from_headers(None, None, "GET", "/token")
    if allowed:
        answer = runtime.registry.answer(anonymous, client, "http://h/token", "svc", ["repository:alice/m:pull"])
        assert runtime.tokens.verify(answer["token"], "svc")["access"][0]["actions"] == ["pull"]
        return
    with pytest.raises(Unauthenticated) as refused:
        runtime.registry.answer(anonymous, client, "http://h/token", "svc", ["repository:alice/m:pull"])
    assert refused.value.status == 401 and refused.value.headers["WWW-Authenticate"] == 'Bearer realm="corral"'


def test_auth_mode_follows_corral_auth_required(tmp_path) -> None:
    from corral_auth.settings import AuthSettings

    modes = {value: AuthSettings.from_env({"CORRAL_HOME": str(tmp_path), "CORRAL_AUTH_REQUIRED": value}).auth_mode
             for value in ("", "1", "0")}
    assert modes == {"": "auto", "1": "always", "0": "off"}


def test_private_pull_needs_owner_or_grant(runtime, people) -> None:
    runtime.policy.set_private("alice/secret")
    assert _token(runtime, None, "repository:alice/secret:pull")["access"][0]["actions"] == []
    assert _token(runtime, people["bob"], "repository:alice/secret:pull")["access"][0]["actions"] == []
    assert _token(runtime, people["alice"], "repository:alice/secret:pull")["access"][0]["actions"] == ["pull"]
    runtime.policy.grant("alice/secret", "bob")
    assert _token(runtime, people["bob"], "repository:alice/secret:pull")["access"][0]["actions"] == ["pull"]
    assert _token(runtime, people["bob"], "repository:alice/secret:push")["access"][0]["actions"] == []


def test_a_bad_credential_is_401_not_anonymous(runtime, people) -> None:
    with pytest.raises(Unauthenticated):
        _token(runtime, "olk_nope", "repository:alice/m:pull")


def test_tokens_are_short_lived_and_verify_against_the_jwks(runtime, people) -> None:
    answer = runtime.registry.answer(Credential.from_headers(f"Bearer {people['alice']}", None, "GET", "/token"),
                                     "127.0.0.1", "http://h/token", "svc", ["repository:alice/m:push"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.jose import JsonWebKey, JsonWebToken
    claims = JsonWebToken(["RS256"]).decode(answer["token"], JsonWebKey.import_key_set(runtime.tokens.jwks()))
    claims.validate()
    assert claims.header["kid"] == runtime.tokens.jwks()["keys"][0]["kid"]
    assert 0 < claims["exp"] - time.time() <= 300 and claims["aud"] == "svc" and answer["expires_in"] == 300
    assert "d" not in runtime.tokens.jwks()["keys"][0]  # only the public half is published


def test_signed_token_request_as_ollama_sends_it(runtime, people, device) -> None:
    code = runtime.devices.start(device.blob, "laptop")["code"]
    runtime.devices.approve(people["root"], code, "alice", None)
    url = f"http://127.0.0.1:11434/token?nonce=n1&scope=repository%3Aalice%2Fm%3Apush&service=svc&ts={int(time.time())}"
    credential = Credential.from_headers(device.sign(token_message(url)), None, "GET", "/token")
    answer = runtime.registry.answer(credential, "127.0.0.1", url, "svc", ["repository:alice/m:push"])
    assert runtime.tokens.verify(answer["token"], "svc")["access"][0]["actions"] == ["push"]
    with pytest.raises(Unauthenticated):  # the same signed URL again is a replay
        runtime.registry.answer(credential, "127.0.0.1", url, "svc", ["repository:alice/m:push"])


@pytest.mark.parametrize("text", ["repository:../x:pull", "registry:catalog:pull", "repository:a:pull", ""])
def test_bad_scopes_are_400(text) -> None:
    with pytest.raises(BadRequest):
        parse_scope(text)


def test_the_catalog_scope_is_for_admins_only(runtime, people) -> None:
    wanted = ["registry:catalog:*"]
    assert runtime.policy.allowed(people["root"], parse_scope(wanted[0])).wire() == {
        "type": "registry", "name": "catalog", "actions": ["*"]}
    assert _token(runtime, people["alice"], *wanted)["access"] == [
        {"type": "registry", "name": "catalog", "actions": []}]
