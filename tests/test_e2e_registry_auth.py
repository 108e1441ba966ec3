"""Registry token auth end to end: a real auth service, ``corral registry`` with token auth on, two corrals.

Corral A is signed in as alice (``corral signin``: its ``$CORRAL_HOME/id_ed25519`` signs the token
requests of its pushes and pulls, as Ollama does); corral B uses bob's API key
(CORRAL_REGISTRY_API_KEY). The auth service runs on its own port over A's database and keys, and
the registry relays ``/token`` to it. A second registry names a realm on another port, which a
canary HTTP server records.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import ollama
import pytest

from serverproc import BIN, Server, cli_signin, free_port, spawn, start_server, stop_server

pytestmark = pytest.mark.e2e


def _last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


class Canary(http.server.ThreadingHTTPServer):
    """A token realm on another port that records every request it sees."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        canary = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                canary.seen.append({"path": self.path, "authorization": self.headers.get("authorization", "")})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"token": "stolen"}')

            def log_message(self, *_args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Setup:
    """Every process of the module and the names they answer on."""

    def __init__(self, a: Server, admin_key: str, auth_url: str, registry: str, rogue: str, canary: Canary) -> None:
        self.a, self.admin_key, self.auth_url = a, admin_key, auth_url
        self.registry, self.rogue, self.canary = registry, rogue, canary
        self.b: Server | None = None
        self.bob_key = ""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("regauth")
    a = start_server(tmp / "a", {"CORRAL_TRANSFER_RETRIES": "1", "CORRAL_TRANSFER_BACKOFF": "0.1"})
    processes: list[subprocess.Popen] = []
    canary = Canary()
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(a.url, only=("smollm2:135m",))
        admin_key = _last_line(a.corral("admin", "bootstrap"))
        for user in ("alice", "bob"):
            assert a.corral("admin", "create-user", user).returncode == 0
        auth_port = free_port()
        auth_url = f"http://127.0.0.1:{auth_port}"
        processes.append(spawn([sys.executable, "-m", "uvicorn", "corral_auth.main:create_app", "--factory",
                                "--host", "127.0.0.1", "--port", str(auth_port)],
                               {**a.env, "CORRAL_HOME": str(a.home)}, tmp / "auth.log", f"{auth_url}/health", None))
        registries = []
        for name, extra in (("registry", {}),
                            ("rogue", {"CORRAL_REGISTRY_AUTH_CHALLENGE_REALM":
                                       f"http://127.0.0.1:{canary.server_address[1]}/token"})):
            port = free_port()
            env = {**os.environ, "CORRAL_REGISTRY_HOST": f"127.0.0.1:{port}",
                   "CORRAL_REGISTRY_DATA": str(tmp / name / "data"), "CORRAL_HOME": str(tmp / name / "home"),
                   "CORRAL_REGISTRY_AUTH_REALM": f"{auth_url}/token", **extra}
            (tmp / name).mkdir()
            processes.append(spawn([str(BIN / "corral"), "registry"], env, tmp / name / "registry.log",
                                   f"http://127.0.0.1:{port}/v2/", None))  # any answer: /v2/ asks for a token
            registries.append(f"127.0.0.1:{port}")
        yield Setup(a, admin_key, auth_url, registries[0], registries[1], canary)
    finally:
        canary.shutdown()
        for process in processes:
            stop_server(process)
        stop_server(a.process)


def _signin(setup: Setup, user: str) -> None:
    """``corral signin`` on corral A's home, approved by the admin for ``user``."""
    cli_signin(setup.a.env, setup.admin_key, user)


@pytest.fixture(scope="module")
def alice(setup: Setup) -> Setup:
    _signin(setup, "alice")
    return setup


def _admin_token(setup: Setup, registry: str, scope: str) -> str:
    answer = httpx.get(f"http://{registry}/token", params={"service": "corral-registry", "scope": scope},
                       headers={"Authorization": f"Bearer {setup.admin_key}"}, trust_env=False)
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def _tags(setup: Setup, repo: str) -> httpx.Response:
    token = _admin_token(setup, setup.registry, f"repository:{repo}:pull")
    return httpx.get(f"http://{setup.registry}/v2/{repo}/tags/list", headers={"Authorization": f"Bearer {token}"},
                     trust_env=False)


def test_the_registry_refuses_requests_without_a_token(setup: Setup) -> None:
    answer = httpx.get(f"http://{setup.registry}/v2/alice/model/manifests/latest", trust_env=False)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert answer.headers["www-authenticate"] == (f'Bearer realm="http://{setup.registry}/token",'
                                                  'service="corral-registry",scope="repository:alice/model:pull"')


def _copy_on_a(setup: Setup, name: str) -> ollama.Client:
    """Corral A's client, with smollm2:135m copied to name, ready to push."""
    client = ollama.Client(host=setup.a.url)
    client.copy("smollm2:135m", name)
    return client


def _push_refusal(client: ollama.Client, name: str) -> str:
    """The error a streamed push of name fails with."""
    with pytest.raises(ollama.ResponseError) as refused:
        list(client.push(name, insecure=True, stream=True))
    return str(refused.value.error)


def test_alice_pushes_into_her_namespace(alice: Setup) -> None:
    name = f"{alice.registry}/alice/model"
    client = _copy_on_a(alice, name)
    statuses = [p.status for p in client.push(name, insecure=True, stream=True)]
    assert statuses[-1] == "success"
    assert _tags(alice, "alice/model").json() == {"name": "alice/model", "tags": ["latest"]}


def test_alice_cannot_push_into_bobs_namespace(alice: Setup) -> None:
    name = f"{alice.registry}/bob/model"
    client = _copy_on_a(alice, name)
    denied = "unauthorized: access denied: the registry token does not grant repository:bob/model:pull,push"
    assert denied in _push_refusal(client, name)
    cli = alice.a.corral("push", name, "--insecure")
    assert cli.returncode != 0 and denied in cli.stderr
    assert _tags(alice, "bob/model").status_code == 404


@pytest.fixture(scope="module")
def bob(alice: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Corral B, acting as bob through an API key; alice/private pushed by alice and made private."""
    key = httpx.post(f"{alice.a.url}/api/keys", json={"name": "registry", "user": "bob"},
                     headers={"Authorization": f"Bearer {alice.admin_key}"}).json()["key"]
    private = f"{alice.registry}/alice/private"
    client = _copy_on_a(alice, private)
    assert [p.status for p in client.push(private, insecure=True, stream=True)][-1] == "success"
    made = subprocess.run([sys.executable, "-m", "corral_auth", "set-private", "alice/private"], env=alice.a.env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    b = start_server(tmp_path_factory.mktemp("corral-b"), {"CORRAL_REGISTRY_API_KEY": key,
                                                           "CORRAL_TRANSFER_RETRIES": "1"})
    alice.b, alice.bob_key = b, key
    try:
        yield alice
    finally:
        stop_server(b.process)


def _names(server: Server) -> set[str]:
    return {m.model for m in ollama.Client(host=server.url).list().models}


def test_a_private_pull_needs_a_grant(bob: Setup) -> None:
    assert bob.b is not None
    b = ollama.Client(host=bob.b.url)
    private, public = f"{bob.registry}/alice/private:latest", f"{bob.registry}/alice/model:latest"
    with pytest.raises(ollama.ResponseError) as refused:
        list(b.pull(private, insecure=True, stream=True))
    assert "access denied: the registry token does not grant repository:alice/private:pull" in str(refused.value.error)
    assert private not in _names(bob.b)
    assert [p.status for p in b.pull(public, insecure=True, stream=True)][-1] == "success"  # public: anyone
    as_bob = subprocess.run([str(BIN / "corral"), "grants", "add", "alice/private", "bob"], text=True,
                            capture_output=True, env={**bob.a.env, "OLLAMA_API_KEY": bob.bob_key}, timeout=60)
    assert as_bob.returncode != 0 and "only the repository's owner or an admin" in as_bob.stderr
    granted = bob.a.corral("grants", "add", "alice/private", "bob")  # signed with alice's device key
    assert granted.returncode == 0 and "Granted pull on alice/private to bob" in granted.stdout, granted.stderr
    assert [p.status for p in b.pull(private, insecure=True, stream=True)][-1] == "success"
    assert private in _names(bob.b)
    answer = b.generate(model=private, prompt="Say hi.", options={"num_predict": 4, "temperature": 0})
    assert answer.done


def test_a_revoked_grant_refuses_the_next_pull(bob: Setup) -> None:
    assert bob.b is not None
    listed = bob.a.corral("grants", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "alice/private" in line)
    assert row.split()[1:] == ["alice/private", "bob", "pull"]
    assert bob.a.corral("grants", "revoke", row.split()[0]).returncode == 0
    with pytest.raises(ollama.ResponseError) as refused:
        list(ollama.Client(host=bob.b.url).pull(f"{bob.registry}/alice/private", insecure=True, stream=True))
    assert "access denied" in str(refused.value.error)


def test_no_token_travels_to_a_realm_on_another_port(alice: Setup) -> None:
    name = f"{alice.rogue}/alice/model"
    client = _copy_on_a(alice, name)
    assert "does not match original host" in _push_refusal(client, name)
    with pytest.raises(ollama.ResponseError):
        list(client.pull(name, insecure=True, stream=True))
    assert alice.canary.seen == []
