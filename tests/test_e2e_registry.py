"""A private registry between two corral instances, and the faults a transfer must survive.

Processes: the session's corral A (with smollm2:135m), a second corral B, and ``corral registry``
(SQLite + filesystem, its defaults) on loopback; a scriptable fake registry in this process for
the fault cases (small blobs, so they stay fast); a registry in distributed mode (PostgreSQL +
moto's S3 server) when PostgreSQL is running.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from corral_cli.supervisor import free_port
from corral_common.testing.backends import port_open
from corral_common.testing.threads import run_together
from corral_registry.testing import FakeRegistry, digest_of
from serverproc import BIN, Server, spawn, start_server, stop_server

pytestmark = pytest.mark.e2e
PROMPT = "Name a colour."
PARAMS = {"seed": 42, "temperature": 0, "num_predict": 12}
PULL_STATUSES = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]


def _start_registry(tmp: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``corral registry`` on a free loopback port; returns the process and its host:port."""
    port = free_port()
    env = {**os.environ, "CORRAL_REGISTRY_HOST": f"127.0.0.1:{port}", "CORRAL_REGISTRY_DATA": str(tmp / "data"),
           "CORRAL_HOME": str(tmp / "home"), **(extra_env or {})}
    tmp.mkdir(parents=True, exist_ok=True)
    process = spawn([str(BIN / "corral"), "registry"], env, tmp / "registry.log", f"http://127.0.0.1:{port}/v2/")
    return process, f"127.0.0.1:{port}"


def _digests(client: ollama.Client) -> dict[str, str]:
    """Model name -> digest, as the client lists them."""
    return {m.model: m.digest for m in client.list().models}


def _delete_quietly(clients: list[ollama.Client], *names: str) -> None:
    """Delete the models on every client, where they exist."""
    for client in clients:
        for name in names:
            try:
                client.delete(name)
            except ollama.ResponseError:
                pass


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, host = _start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield host
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Corral B: short timeouts so the fault cases stay quick; Redis as its broker when it runs."""
    env = {"CORRAL_TRANSFER_STALE_SECONDS": "3", "CORRAL_TRANSFER_RETRIES": "2", "CORRAL_TRANSFER_BACKOFF": "0.1",
           "CORRAL_TRANSFER_STALL_SECONDS": "10", "CORRAL_EMBEDDED_REGISTRY": "1",
           "CORRAL_REGISTRY_HOST": f"127.0.0.1:{free_port()}"}
    if port_open("127.0.0.1", 6379):
        import redis

        for db in (11, 12):
            redis.Redis.from_url(f"redis://127.0.0.1:6379/{db}").flushdb()  # no task left by an earlier run
        env.update(CORRAL_BROKER_URL="redis://127.0.0.1:6379/11", CORRAL_RESULT_BACKEND="redis://127.0.0.1:6379/12")
    srv = start_server(tmp_path_factory.mktemp("corral-b"), env)
    try:
        yield srv
    finally:
        stop_server(srv.process)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry().start()
    try:
        yield registry
    finally:
        registry.stop()


def _statuses(progress) -> list[str]:
    out: list[str] = []
    for item in progress:
        status = item.status if hasattr(item, "status") else item["status"]
        if not out or out[-1] != status:
            out.append(status)
    return out


def _blob_files(server: Server) -> set[str]:
    return {p.name for p in (server.models_dir() / "blobs").iterdir()}


def _store_files(server: Server) -> set[str]:
    return {p.relative_to(server.models_dir()).as_posix() for p in server.models_dir().rglob("*")
            if p.is_file() and p.name != ".gc.lock"}


# --- the round trip ---------------------------------------------------------------------------------
def test_push_from_a_pull_on_b_run_with_the_same_output(server: Server, second: Server, registry: str) -> None:
    a, b = ollama.Client(host=server.url), ollama.Client(host=second.url)
    name, cli_name = f"{registry}/team/assistant:v1", f"{registry}/team/assistant:v2"
    a.create(model=name, from_="smollm2:135m", system="You answer in one word.", parameters=PARAMS)
    try:
        expected = a.generate(model=name, prompt=PROMPT).response
        pushed = list(a.push(name, insecure=True, stream=True))
        statuses = _statuses(pushed)
        assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
        layers = [p for p in pushed if p.digest]
        assert layers and all(p.status == f"pushing {p.digest[7:19]}" for p in layers)
        assert any(p.completed == p.total and p.total > 90_000_000 for p in layers)

        pulled = list(b.pull(name, insecure=True, stream=True))
        statuses = _statuses(pulled)
        assert statuses[0] == "pulling manifest" and statuses[-3:] == PULL_STATUSES[1:]
        downloads = [p for p in pulled if p.digest]
        assert {p.status for p in downloads} == {f"pulling {p.digest[7:19]}" for p in downloads}
        assert max(p.completed or 0 for p in downloads) > 90_000_000
        assert _digests(b)[name] == _digests(a)[name]

        a.copy(name, cli_name)
        done = server.corral("push", "--insecure", cli_name)
        assert done.returncode == 0, done.stderr
        assert "pushing manifest" in done.stderr and "success" in done.stderr
        run = second.corral("run", "--insecure", cli_name, PROMPT)  # run pulls what is missing, then answers
        assert run.returncode == 0, run.stderr
        assert "pulling manifest" in run.stderr and "success" in run.stderr
        assert run.stdout.strip() == expected.strip()  # same seed (a PARAMETER of the model), same words
    finally:
        _delete_quietly([a], name, cli_name)


def test_the_embedded_registry_receives_into_the_local_store(server: Server, second: Server) -> None:
    a, embedded = ollama.Client(host=server.url), second.env["CORRAL_REGISTRY_HOST"]
    host, port = embedded.split(":")
    deadline = time.monotonic() + 30
    while not port_open(host, int(port)) and time.monotonic() < deadline:
        time.sleep(0.2)
    name = f"{embedded}/team/embedded:v1"
    a.create(model=name, from_="smollm2:135m", system="Served by B.")
    try:
        assert a.push(name, insecure=True).status == "success"
        on_b = {m.model: m.digest for m in ollama.Client(host=second.url).list().models}
        assert on_b["team/embedded:v1"] == {m.model: m.digest for m in a.list().models}[name]
        served = httpx.get(f"http://{embedded}/v2/team/embedded/manifests/v1", trust_env=False)
        assert served.status_code == 200
        assert served.content == (second.models_dir() / "manifests/registry.ollama.ai/team/embedded/v1").read_bytes()
    finally:
        a.delete(name)


def test_stream_false_and_errors_look_like_ollamas(second: Server, registry: str) -> None:
    b = ollama.Client(host=second.url)
    with pytest.raises(ollama.ResponseError) as missing:
        b.pull(f"{registry}/team/never:v1", insecure=True)
    assert "pull model manifest: file does not exist" in str(missing.value)
    raw = httpx.post(f"{second.url}/api/pull", json={"model": "bad/../name"}, trust_env=False)
    assert raw.status_code == 400 and raw.json() == {"error": "invalid model name"}
    raw = httpx.post(f"{second.url}/api/push", json={}, trust_env=False)
    assert raw.status_code == 400 and raw.json() == {"error": "model is required"}
    for refused in ("169.254.169.254/latest/meta-data", "10.0.0.5:6379/x/y"):  # checked before any connection
        raw = httpx.post(f"{second.url}/api/pull", json={"model": refused, "insecure": True}, trust_env=False)
        assert raw.status_code == 403 and "non-public address" in raw.json()["error"]


# --- faults -------------------------------------------------------------------------------------------
def _worker_pid(server: Server) -> int:
    """The registry's Celery worker among the supervisor's children."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.process.pid and b"corral_registry.worker" in cmdline:
            return int(entry.name)
    raise AssertionError("registry worker not found")


def test_a_killed_worker_resumes_the_pull_with_a_range_request(second: Server, fake: FakeRegistry) -> None:
    weights = hashlib.sha256(b"slow").digest() * (6_000_000 // 32)
    fake.add_model("team/slow", "v1", [weights])
    fake.behaviour.bytes_per_second = 1_500_000
    name = f"{fake.host}/team/slow:v1"
    events: list[dict] = []

    def pull() -> None:
        with httpx.stream("POST", f"{second.url}/api/pull", json={"model": name, "insecure": True},
                          timeout=120, trust_env=False) as response:
            for line in response.iter_lines():
                if line.strip():
                    events.append(json.loads(line))

    thread = threading.Thread(target=pull)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any((e.get("completed") or 0) > 1_500_000 for e in list(events)):
        time.sleep(0.05)
    os.kill(_worker_pid(second), signal.SIGKILL)  # about a third of the blob is on disk
    fake.behaviour.bytes_per_second = 0
    thread.join(90)
    assert events and events[-1] == {"status": "success"}, events[-3:]
    ranges = [s.headers.get("Range", "") for s in fake.requests("GET", digest_of(weights))]
    assert len(ranges) >= 2 and ranges[-1].startswith("bytes=") and not ranges[-1].startswith("bytes=0-")
    blob = second.models_dir() / "blobs" / f"sha256-{digest_of(weights)[7:]}"
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest_of(weights)[7:]
    assert name in {m.model for m in ollama.Client(host=second.url).list().models}


def test_a_caller_that_disconnects_does_not_stop_the_pull(second: Server, fake: FakeRegistry) -> None:
    weights = hashlib.sha256(b"detached").digest() * 40_000
    fake.add_model("team/detached", "v1", [weights])
    fake.behaviour.bytes_per_second = 1_000_000
    name = f"{fake.host}/team/detached:v1"
    with httpx.stream("POST", f"{second.url}/api/pull", json={"model": name, "insecure": True},
                      timeout=30, trust_env=False) as response:
        first = json.loads(next(response.iter_lines()))
    assert first == {"status": "pulling manifest"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and name not in {m.model for m in ollama.Client(host=second.url).list().models}:
        time.sleep(0.2)
    assert name in {m.model for m in ollama.Client(host=second.url).list().models}


@pytest.mark.parametrize("fault", ["corrupt", "truncate"])
def test_a_corrupted_or_truncated_blob_is_rejected_and_nothing_published(second: Server, fake: FakeRegistry,
                                                                          fault: str) -> None:
    weights = hashlib.sha256(fault.encode()).digest() * 4000
    fake.add_model(f"team/{fault}", "v1", [weights])
    if fault == "corrupt":
        fake.behaviour.corrupt.add(digest_of(weights))
    else:
        fake.behaviour.truncate[digest_of(weights)] = len(weights) - 1000
    name = f"{fake.host}/team/{fault}:v1"
    with pytest.raises(ollama.ResponseError) as error:
        ollama.Client(host=second.url).pull(name, insecure=True)
    assert ("digest mismatch" if fault == "corrupt" else "bytes for sha256:") in str(error.value)
    assert name not in {m.model for m in ollama.Client(host=second.url).list().models}
    assert not any(digest_of(weights)[7:] in f for f in _blob_files(second))


def test_concurrent_pulls_download_each_blob_once(second: Server, fake: FakeRegistry) -> None:
    layers = [hashlib.sha256(b"one").digest() * 20_000, hashlib.sha256(b"two").digest() * 10_000]
    fake.add_model("team/twice", "v1", layers)
    fake.behaviour.bytes_per_second = 800_000
    name, results = f"{fake.host}/team/twice:v1", []

    def pull() -> None:
        results.append(ollama.Client(host=second.url).pull(name, insecure=True).status)

    assert run_together(pull, [()] * 2, timeout=60) == []
    assert results == ["success", "success"]
    for data in layers:
        assert len(fake.requests("GET", digest_of(data))) == 1


@pytest.mark.parametrize("digest", ["../../../../../tmp/corral-canary", "sha256:../../../../corral-canary",
                                    "sha256:" + "0" * 63])
def test_path_trick_digests_are_rejected_before_any_byte_is_written(second: Server, fake: FakeRegistry,
                                                                    tmp_path: Path, digest: str) -> None:
    fake.add_model("team/evil", "v1", [b"payload"],
                   overrides={"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest,
                                          "size": 7}]})
    before = _store_files(second)
    with pytest.raises(ollama.ResponseError, match="invalid"):
        ollama.Client(host=second.url).pull(f"{fake.host}/team/evil:v1", insecure=True)
    assert _store_files(second) == before
    assert not Path("/tmp/corral-canary").exists()
    assert fake.requests("GET", "/blobs/") == [] and fake.requests("HEAD", "/blobs/") == []


def test_a_token_realm_on_another_host_gets_no_credentials(second: Server, fake: FakeRegistry) -> None:
    attacker = FakeRegistry().start()
    try:
        fake.add_model("team/private", "v1", [b"weights"])
        fake.behaviour.token = "secret-token"
        fake.behaviour.realm = f"http://{attacker.host}/token"
        with pytest.raises(ollama.ResponseError, match="does not match original host"):
            ollama.Client(host=second.url).pull(f"{fake.host}/team/private:v1", insecure=True)
        assert attacker.seen == []
        fake.behaviour.realm = ""  # the realm on the registry's own host is asked, with a signature
        assert ollama.Client(host=second.url).pull(f"{fake.host}/team/private:v1", insecure=True).status == "success"
        assert len(fake.token_requests) == 1 and ":" in fake.token_requests[0].headers["Authorization"]
    finally:
        attacker.stop()


# --- distributed mode -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(process)


@pytest.mark.skipif(not port_open("127.0.0.1", 5432), reason="PostgreSQL is not running on 127.0.0.1:5432")
def test_distributed_registry_on_postgres_and_s3(server: Server, second: Server, s3_endpoint: str,
                                                 tmp_path: Path) -> None:
    from corral_common.testing.backends import postgres_schema
    from corral_common.testing.ggufwriter import runnable_model

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(runnable_model().build())
    with postgres_schema() as database_url:
        env = {"CORRAL_DATABASE_URL": database_url, "CORRAL_S3_BUCKET": "corral-e2e", "CORRAL_S3_PREFIX": "reg",
               "CORRAL_S3_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1"}
        process, host = _start_registry(tmp_path, env)
        a, b = ollama.Client(host=server.url), ollama.Client(host=second.url)
        name = f"{host}/team/s3:v1"
        try:
            a.create(model=name, files={"tiny.gguf": a.create_blob(gguf)}, system="Stored in S3.")
            assert a.push(name, insecure=True).status == "success"
            manifest = httpx.get(f"http://{host}/v2/team/s3/manifests/v1", trust_env=False)
            layer = json.loads(manifest.content)["layers"][0]["digest"]
            redirect = httpx.get(f"http://{host}/v2/team/s3/blobs/{layer}", trust_env=False)
            assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3_endpoint)
            assert b.pull(name, insecure=True).status == "success"
            assert _digests(a)[name] == _digests(b)[name]
            assert httpx.get(f"http://{host}/v2/_catalog", trust_env=False).json()["repositories"] == ["team/s3"]
        finally:
            _delete_quietly([a, b], name)
            stop_server(process)
