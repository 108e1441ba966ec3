"""Registry-side token auth: challenges, signature and claim checks, access per action, JWKS refetch."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from corral_registry.main import create_app
from corral_registry.settings import RegistrySettings, StorageSettings, TokenAuthSettings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken

SERVICE, ISSUER = "test-registry", "test-auth"


class Signer:
    """An RSA key that signs tokens the way the auth service does."""

    def __init__(self) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        self.key = JsonWebKey.import_key(pem, {"kty": "RSA"})
        self.kid = self.key.thumbprint()

    def public(self) -> dict:
        return {**self.key.as_dict(is_private=False), "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, access: list[dict], **overrides) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": SERVICE, "sub": "alice", "iat": now, "nbf": now - 5, "exp": now + 300,
                  "access": access, **overrides}
        claims = {k: v for k, v in claims.items() if v is not None}
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        return JsonWebToken(["RS256"]).encode(header, claims, self.key).decode()


def repo_access(name: str, *actions: str) -> list[dict]:
    return [{"type": "repository", "name": name, "actions": list(actions)}]


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def published(signer: Signer) -> dict:
    """What the fake auth service publishes; tests may rotate it."""
    return {"keys": [signer.public()], "fetches": 0}


@pytest.fixture
def api(tmp_path: Path, published: dict) -> Iterator[TestClient]:
    settings = RegistrySettings(models_dir=tmp_path / "models", home=tmp_path / "home",
                                registry_data=tmp_path / "data",
                                storage=StorageSettings(driver="inmemory"),
                                token_auth=TokenAuthSettings(realm="http://auth.internal/token", issuer=ISSUER,
                                                             service=SERVICE)).standalone()

    def jwks(request: httpx.Request) -> httpx.Response:
        assert request.url == "http://auth.internal/jwks.json"
        published["fetches"] += 1
        return httpx.Response(200, json={"keys": published["keys"]})

    with TestClient(create_app(settings)) as client:
        keys = client.app.state.token_verifier.keys
        keys.http = httpx.AsyncClient(transport=httpx.MockTransport(jwks))
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_off_by_default_no_token_needed(tmp_path: Path) -> None:
    settings = RegistrySettings(models_dir=tmp_path / "m", home=tmp_path / "h", registry_data=tmp_path / "d",
                                storage=StorageSettings(driver="inmemory")).standalone()
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/_catalog").status_code == 200
        assert client.get("/token").status_code == 404


def test_a_read_without_token_gets_a_pull_challenge(api: TestClient) -> None:
    answer = api.get("/v2/alice/model/tags/list")
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert answer.headers["www-authenticate"] == (
        f'Bearer realm="http://testserver/token",service="{SERVICE}",scope="repository:alice/model:pull"')


def test_a_write_without_token_gets_a_pull_push_challenge(api: TestClient) -> None:
    answer = api.post("/v2/alice/model/blobs/uploads/")
    assert answer.status_code == 401
    assert 'scope="repository:alice/model:pull,push"' in answer.headers["www-authenticate"]


def test_a_pull_token_reads_but_cannot_push(api: TestClient, signer: Signer) -> None:
    token = signer.token(repo_access("alice/model", "pull"))
    assert api.get("/v2/alice/model/tags/list", headers=_bearer(token)).status_code == 404  # read allowed: unknown
    answer = api.post("/v2/alice/model/blobs/uploads/", headers=_bearer(token))
    assert answer.status_code == 401
    assert 'error="insufficient_scope"' in answer.headers["www-authenticate"]
    assert 'scope="repository:alice/model:pull,push"' in answer.headers["www-authenticate"]


def test_a_push_token_uploads_only_to_its_repository(api: TestClient, signer: Signer) -> None:
    token = signer.token(repo_access("alice/model", "pull", "push"))
    assert api.post("/v2/alice/model/blobs/uploads/", headers=_bearer(token)).status_code == 202
    assert api.post("/v2/bob/model/blobs/uploads/", headers=_bearer(token)).status_code == 401


@pytest.mark.parametrize("overrides", [
    {"aud": "another-registry"}, {"iss": "someone-else"}, {"exp": int(time.time()) - 60},
    {"nbf": int(time.time()) + 600}, {"iat": int(time.time()) + 600}, {"exp": None}, {"iat": None},
])
def test_bad_claims_are_refused(api: TestClient, signer: Signer, overrides: dict) -> None:
    token = signer.token(repo_access("alice/model", "pull"), **overrides)
    answer = api.get("/v2/alice/model/tags/list", headers=_bearer(token))
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


def test_a_token_from_another_key_or_tampered_is_refused(api: TestClient, signer: Signer) -> None:
    stranger = Signer()
    assert api.get("/v2/alice/model/tags/list",
                   headers=_bearer(stranger.token(repo_access("alice/model", "pull")))).status_code == 401
    good = signer.token(repo_access("alice/model", "pull"))
    head, body, sig = good.split(".")
    forged = signer.token(repo_access("alice/model", "pull", "push")).split(".")[1]
    assert api.get("/v2/alice/model/tags/list", headers=_bearer(f"{head}.{forged}x.{sig}")).status_code == 401
    assert api.get("/v2/alice/model/tags/list", headers=_bearer("not-a-jwt")).status_code == 401
    assert api.get("/v2/alice/model/tags/list", headers=_bearer(good)).status_code == 404


def test_an_unknown_kid_refetches_the_jwks(api: TestClient, signer: Signer, published: dict,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.get("/v2/alice/model/tags/list",
                   headers=_bearer(signer.token(repo_access("alice/model", "pull")))).status_code == 404
    rotated = Signer()
    published["keys"] = [signer.public(), rotated.public()]
    monkeypatch.setattr("corral_registry.v2.tokenauth.REFETCH_EVERY", 0.0)
    before = published["fetches"]
    answer = api.get("/v2/alice/model/tags/list", headers=_bearer(rotated.token(repo_access("alice/model", "pull"))))
    assert answer.status_code == 404 and published["fetches"] == before + 1


def test_the_catalog_needs_the_catalog_scope(api: TestClient, signer: Signer) -> None:
    pull = signer.token(repo_access("alice/model", "pull"))
    answer = api.get("/v2/_catalog", headers=_bearer(pull))
    assert answer.status_code == 401 and 'scope="registry:catalog:*"' in answer.headers["www-authenticate"]
    catalog = signer.token([{"type": "registry", "name": "catalog", "actions": ["*"]}])
    assert api.get("/v2/_catalog", headers=_bearer(catalog)).json() == {"repositories": []}


def test_the_base_endpoint_needs_any_valid_token(api: TestClient, signer: Signer) -> None:
    answer = api.get("/v2/")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == f'Bearer realm="http://testserver/token",service="{SERVICE}"'
    assert api.get("/v2/", headers=_bearer(signer.token([]))).status_code == 200
    assert api.get("/v2/", headers=_bearer(Signer().token([]))).status_code == 401


def test_the_token_relay_passes_the_credential_and_the_signed_url(api: TestClient) -> None:
    seen: list[httpx.Request] = []

    def realm(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"token": "t"})

    api.app.state.token_relay.http = httpx.AsyncClient(transport=httpx.MockTransport(realm))
    answer = api.get("/token?nonce=n&scope=repository%3Aalice%2Fm%3Apull&service=s&ts=1",
                     headers={"Authorization": "pubkey:signature"})
    assert answer.status_code == 200 and answer.json() == {"token": "t"}
    assert str(seen[0].url) == "http://auth.internal/token?nonce=n&scope=repository%3Aalice%2Fm%3Apull&service=s&ts=1"
    assert seen[0].headers["authorization"] == "pubkey:signature"
    assert seen[0].headers["x-corral-original-url"] == (
        "http://testserver/token?nonce=n&scope=repository%3Aalice%2Fm%3Apull&service=s&ts=1")


def test_an_oversized_jwks_is_not_trusted(api: TestClient, signer: Signer) -> None:
    """A JWKS answer past the cap is dropped unread, so its keys verify nothing."""
    padding = "x" * (80 << 10)
    api.app.state.token_verifier.keys.http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda _request: httpx.Response(200, json={"keys": [signer.public()], "padding": padding})))
    answer = api.get("/v2/alice/model/tags/list", headers=_bearer(signer.token(repo_access("alice/model", "pull"))))
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("failure", ["unreachable", "oversized"])
def test_a_token_request_the_auth_service_cannot_answer_is_a_503(api: TestClient, failure: str) -> None:
    def realm(request: httpx.Request) -> httpx.Response:
        if failure == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=b"{" + b" " * (100 << 10) + b"}")

    api.app.state.token_relay.http = httpx.AsyncClient(transport=httpx.MockTransport(realm))
    answer = api.get("/token?scope=repository%3Aalice%2Fm%3Apull&service=s")
    assert answer.status_code == 503
    error = answer.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE" and "auth service did not answer" in error["detail"]
