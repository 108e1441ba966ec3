"""API keys, signin and registry tokens end to end: a real ``corral serve`` driven by the ollama SDK and the CLI.

The "remote" client is exercised on loopback through the trusted-proxy setting: the server trusts
127.0.0.1 as a proxy, and each test names its client address in X-Forwarded-For.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from corral_common.testing.backends import port_open, postgres_schema
from serverproc import BIN, Server, cli_signin, start_server, stop_server

pytestmark = pytest.mark.e2e
_ADDRESSES = (f"203.0.113.{n}" for n in itertools.count(1))  # TEST-NET-3: a fresh "remote" client per use
ISSUED: list[str] = []  # every key handed out here, to search the database for afterwards


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A corral that trusts loopback as a proxy, with small rate limits, and its admin key in env."""
    srv = start_server(tmp_path_factory.mktemp("auth"), {
        "CORRAL_TRUSTED_PROXIES": "127.0.0.1", "CORRAL_RATE_LIMIT_RPS": "2", "CORRAL_RATE_LIMIT_BURST": "20",
        "CORRAL_AUTH_LOCKOUT_FAILURES": "10"})
    try:
        key = _last_line(srv.corral("admin", "bootstrap"))
        ISSUED.append(key)
        srv.env["CORRAL_TEST_ADMIN_KEY"] = key
        yield srv
    finally:
        stop_server(srv.process)


def _admin(srv: Server) -> str:
    return srv.env["CORRAL_TEST_ADMIN_KEY"]


def _remote(srv: Server, key: str | None = None, address: str | None = None) -> ollama.Client:
    headers = {"X-Forwarded-For": address or next(_ADDRESSES)}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return ollama.Client(host=srv.url, headers=headers)


def _new_key(srv: Server, *scopes: str, name: str = "test") -> dict:
    answer = httpx.post(f"{srv.url}/api/keys", json={"name": name, "scopes": list(scopes) or None},
                        headers={"Authorization": f"Bearer {_admin(srv)}"})
    assert answer.status_code == 200, answer.text
    ISSUED.append(answer.json()["key"])
    return answer.json()


def _status(call) -> int:
    with pytest.raises(ollama.ResponseError) as caught:
        call()
    return caught.value.status_code


def test_loopback_clients_need_no_key(guarded) -> None:
    assert ollama.Client(host=guarded.url).list().models is not None


def test_remote_client_without_key_gets_401(guarded) -> None:
    assert _status(_remote(guarded).list) == 401
    raw = httpx.get(f"{guarded.url}/api/tags", headers={"X-Forwarded-For": next(_ADDRESSES)})
    assert raw.status_code == 401 and raw.headers["www-authenticate"].startswith('Bearer realm="corral"')
    assert httpx.get(f"{guarded.url}/api/version", headers={"X-Forwarded-For": next(_ADDRESSES)}).status_code == 200


def test_remote_client_with_ollama_api_key_gets_200(guarded, monkeypatch) -> None:
    key = _last_line(_cli_key(guarded, "sdk", "models:read"))
    monkeypatch.setenv("OLLAMA_API_KEY", key)
    client = ollama.Client(host=guarded.url, headers={"X-Forwarded-For": next(_ADDRESSES)})
    assert client.list().models is not None
    assert client.ps().models is not None


def _cli_key(srv: Server, name: str, *scopes: str) -> subprocess.CompletedProcess:
    args = ["keys", "create", name, *itertools.chain.from_iterable(("--scope", s) for s in scopes)]
    result = subprocess.run([str(BIN / "corral"), *args], env={**srv.env, "OLLAMA_API_KEY": _admin(srv)},
                            capture_output=True, text=True, timeout=60)
    ISSUED.append(result.stdout.strip().splitlines()[-1] if result.returncode == 0 else "")
    return result


def test_unknown_id_and_wrong_secret_get_the_same_401(guarded) -> None:
    real = _new_key(guarded, "models:read")
    _prefix, key_id, _secret, _check = real["key"].split("_")
    from corral_auth import apikeys  # only to forge well-formed keys with a valid checksum

    answers = [httpx.get(f"{guarded.url}/api/tags", headers={"X-Forwarded-For": next(_ADDRESSES),
                                                             "Authorization": f"Bearer {forged}"})
               for forged in (apikeys.issue(key_id), apikeys.issue("Unknown1"))]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].content == answers[1].content
    assert answers[0].headers["www-authenticate"] == answers[1].headers["www-authenticate"]


def test_revoked_key_gets_401_at_once(guarded) -> None:
    key = _new_key(guarded, "models:read")
    client = _remote(guarded, key["key"])
    assert client.list().models is not None
    revoked = subprocess.run([str(BIN / "corral"), "keys", "revoke", key["id"]], capture_output=True, text=True,
                             env={**guarded.env, "OLLAMA_API_KEY": _admin(guarded)}, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    assert _status(client.list) == 401
    listed = subprocess.run([str(BIN / "corral"), "keys", "list"], capture_output=True, text=True,
                            env={**guarded.env, "OLLAMA_API_KEY": _admin(guarded)}, timeout=60)
    assert any(line.startswith(key["id"]) and "revoked" in line for line in listed.stdout.splitlines())


def test_wrong_scope_gets_403(guarded) -> None:
    inference_only = _remote(guarded, _new_key(guarded, "inference")["key"])
    assert _status(lambda: inference_only.delete("smollm2:135m")) == 403
    assert _status(lambda: inference_only.pull("nothing/here")) == 403
    reader = _new_key(guarded, "models:read")["key"]
    assert _status(lambda: _remote(guarded, reader).chat(model="x", messages=[])) == 403

    def v1_models(key: str) -> httpx.Response:
        return httpx.get(f"{guarded.url}/v1/models", headers={"Authorization": f"Bearer {key}",
                                                              "X-Forwarded-For": next(_ADDRESSES)})

    refused, listed = v1_models(_new_key(guarded, "inference")["key"]), v1_models(reader)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert listed.status_code == 200 and "data" in listed.json()  # /v1/models needs what /api/tags needs


def test_a_burst_gets_429_with_retry_after(guarded) -> None:
    key, address = _new_key(guarded, "models:read")["key"], next(_ADDRESSES)
    with httpx.Client(base_url=guarded.url, headers={"Authorization": f"Bearer {key}",
                                                      "X-Forwarded-For": address}) as http:
        answers = [http.get("/api/tags") for _ in range(40)]
    limited = [a for a in answers if a.status_code == 429]
    assert answers[0].status_code == 200 and limited
    assert int(limited[0].headers["retry-after"]) >= 1


def test_key5_failures_throttle_the_address_but_not_a_valid_key(guarded) -> None:
    good, address = _new_key(guarded, "models:read")["key"], next(_ADDRESSES)
    for _ in range(10):
        assert _status(_remote(guarded, "olk_wrong_key", address).list) == 401
    assert _status(_remote(guarded, "olk_wrong_key", address).list) == 429  # further bad keys from there
    assert _remote(guarded, good, address).list().models is not None  # the right key, from there, still works
    assert _remote(guarded, good).list().models is not None


class DeviceKey:
    """The signin key the CLI wrote, signing requests the way Ollama's client does."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        raw = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        self.blob = raw.decode().split()[1]

    @classmethod
    def load(cls, path: Path) -> "DeviceKey":
        return cls(serialization.load_ssh_private_key(path.read_bytes(), password=None))

    def headers(self, method: str, path: str, signed_path: str | None = None, ts: int | None = None) -> tuple:
        uri = f"{path}?ts={int(time.time()) if ts is None else ts}&nonce={secrets.token_urlsafe(12)}"
        signed_uri = uri.replace(path, signed_path, 1) if signed_path else uri
        signature = base64.b64encode(self.key.sign(f"{method},{signed_uri}".encode())).decode()
        return uri, {"Authorization": f"{self.blob}:{signature}", "X-Forwarded-For": next(_ADDRESSES)}


def _signin(srv: Server, device_home: Path, user: str) -> None:
    cli_signin({**srv.env, "CORRAL_HOME": str(device_home)}, _admin(srv), user)


def test_signin_end_to_end(guarded, tmp_path) -> None:
    subprocess.run([str(BIN / "corral"), "admin", "create-user", "alice"], env=guarded.env, check=True, timeout=60)
    _signin(guarded, tmp_path, "alice")
    assert (tmp_path / "id_ed25519.pub").read_text().startswith("ssh-ed25519 ")
    device = DeviceKey.load(tmp_path / "id_ed25519")
    uri, headers = device.headers("GET", "/api/tags")
    assert httpx.get(f"{guarded.url}{uri}", headers=headers).status_code == 200
    assert httpx.get(f"{guarded.url}{uri}", headers=headers).status_code == 401  # replayed nonce
    stale_uri, stale = device.headers("GET", "/api/tags", ts=int(time.time()) - 3600)
    assert httpx.get(f"{guarded.url}{stale_uri}", headers=stale).status_code == 401
    other_uri, other = device.headers("GET", "/api/tags", signed_path="/api/ps")
    assert httpx.get(f"{guarded.url}{other_uri}", headers=other).status_code == 401
    unbound_uri, unbound = DeviceKey(Ed25519PrivateKey.generate()).headers("GET", "/api/tags")
    assert httpx.get(f"{guarded.url}{unbound_uri}", headers=unbound).status_code == 401
    me_uri, me = device.headers("POST", "/api/me")
    assert httpx.post(f"{guarded.url}{me_uri}", headers=me).json()["name"] == "alice"
    out = subprocess.run([str(BIN / "corral"), "signout"], env={**guarded.env, "CORRAL_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    uri, headers = device.headers("GET", "/api/tags")
    assert httpx.get(f"{guarded.url}{uri}", headers=headers).status_code == 401


def test_registry_tokens_follow_namespace_ownership(guarded) -> None:
    subprocess.run([str(BIN / "corral"), "admin", "create-user", "bob"], env=guarded.env, check=True, timeout=60)
    answer = httpx.post(f"{guarded.url}/api/keys", json={"name": "bob", "user": "bob"},
                        headers={"Authorization": f"Bearer {_admin(guarded)}"})
    bob = answer.json()["key"]
    ISSUED.append(bob)
    token = httpx.get(f"{guarded.url}/token", headers={"Authorization": f"Bearer {bob}"},
                      params=[("service", "corral"), ("scope", "repository:bob/m:pull,push"),
                              ("scope", "repository:admin/m:pull,push")])
    assert token.status_code == 200
    from authlib.jose import JsonWebKey, JsonWebToken

    jwks = JsonWebKey.import_key_set(httpx.get(f"{guarded.url}/.well-known/jwks.json").json())
    access = JsonWebToken(["RS256"]).decode(token.json()["token"], jwks)["access"]
    assert access == [{"type": "repository", "name": "bob/m", "actions": ["pull", "push"]},
                      {"type": "repository", "name": "admin/m", "actions": ["pull"]}]


def test_key1_anonymous_registry_token_only_where_no_key_is_needed(guarded) -> None:
    params = {"service": "corral", "scope": "repository:library/m:pull"}
    remote = httpx.get(f"{guarded.url}/token", params=params, headers={"X-Forwarded-For": next(_ADDRESSES)})
    assert remote.status_code == 401 and remote.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{guarded.url}/token", params=params).json()["token"]  # loopback: auth is off for it


def test_audit_log_and_logs_hold_no_secrets(guarded) -> None:
    key = _new_key(guarded, "inference")
    assert _status(lambda: _remote(guarded, key["key"]).chat(model="no-such-model", messages=[])) == 404
    db = sqlite3.connect(guarded.home / "auth.sqlite")
    deadline = time.monotonic() + 10  # the audit event is sent after the response
    rows: list = []
    while not rows and time.monotonic() < deadline:
        rows = db.execute("SELECT user, route, model, status FROM auth_audit_log WHERE key_id = ?",
                          (key["id"],)).fetchall()
        time.sleep(0.1)
    assert rows == [("admin", "/api/chat", "no-such-model", 404)]
    log = (guarded.home.parent / "serve.log").read_text(errors="replace")
    assert not [k for k in ISSUED if k and k in log]


def test_database_never_contains_an_issued_secret(guarded) -> None:
    dump = "\n".join(sqlite3.connect(guarded.home / "auth.sqlite").iterdump())
    issued = [k for k in ISSUED if k]
    assert len(issued) >= 5
    assert [k for k in issued if k in dump or k.split("_")[2] in dump] == []


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway Postgres schema, as the plain libpq URL a user sets (and psycopg reads)."""
    with postgres_schema("auth_e2e") as url:
        yield url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.skipif(not (port_open("127.0.0.1", 5432) and port_open("127.0.0.1", 6379)),
                    reason="Postgres and Redis must run on 127.0.0.1")
def test_distributed_mode_requires_keys_from_everyone(tmp_path, pg_url) -> None:
    import psycopg

    env = {"CORRAL_AUTH_REQUIRED": "1", "CORRAL_DATABASE_URL": pg_url, "CORRAL_REDIS_URL": "redis://127.0.0.1:6379/11",
           "CORRAL_AUTH_PEPPER": secrets.token_hex(16)}
    srv = start_server(tmp_path, env, ready_status=401)  # keys are required: a keyless probe gets its 401
    try:
        admin = _last_line(srv.corral("admin", "bootstrap"))
        assert _status(ollama.Client(host=srv.url).list) == 401  # loopback needs a key too
        keyed = {**srv.env, "OLLAMA_API_KEY": admin}
        created = subprocess.run([str(BIN / "corral"), "keys", "create", "pg-key", "--scope", "models:read"],
                                 env=keyed, capture_output=True, text=True, timeout=60)
        key = _last_line(created)
        deadline = time.monotonic() + 30
        while True:  # the gateway answers before the model store does
            try:
                assert ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {key}"}).list() is not None
                break
            except ollama.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        listed = subprocess.run([str(BIN / "corral"), "list"], env=keyed, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and listed.stdout.startswith("NAME"), listed.stderr
        assert not (tmp_path / "home" / "auth.sqlite").exists()
        with psycopg.connect(pg_url) as db:
            rows = [repr(r) for t in ("auth_users", "auth_api_keys", "auth_audit_log")
                    for r in db.execute(f"SELECT * FROM {t}").fetchall()]
        dump = "\n".join(rows)
        assert key.split("_")[1] in dump and key not in dump and admin not in dump
        assert key.split("_")[2] not in dump and admin.split("_")[2] not in dump
    finally:
        stop_server(srv.process)


def test_serve_warns_loudly_when_exposed_without_keys(capsys) -> None:
    from corral_cli.supervisor import auth_disabled_exposure, warn_if_exposed

    warn_if_exposed({"CORRAL_AUTH_REQUIRED": "0"}, "0.0.0.0")
    assert "API keys are OFF" in capsys.readouterr().err
    assert not auth_disabled_exposure({"CORRAL_AUTH_REQUIRED": "0"}, "127.0.0.1")
    assert not auth_disabled_exposure({}, "0.0.0.0")  # the default requires keys from remote clients
    assert not auth_disabled_exposure({"CORRAL_AUTH_REQUIRED": "1"}, "0.0.0.0")
