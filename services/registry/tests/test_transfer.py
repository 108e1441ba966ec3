"""Pull and push against a real /v2 registry (uvicorn on loopback) and a scriptable fake one."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from corral_common.digest import Digest
from corral_common.errors import BadGateway, BadRequest, Forbidden, InsufficientStorage, NotFound, Unauthorized
from corral_common.internal import TransferRequest
from corral_common.jobs import JobReporter
from corral_common.names import ModelName
from corral_common.testing.threads import run_together
from corral_registry import media_types
from corral_registry.main import create_app
from corral_registry.manifest import Layer, Manifest
from corral_registry.pull import pull_model
from corral_registry.push import push_model
from corral_registry.settings import RegistrySettings, StorageSettings, TransferSettings
from corral_registry.store import ModelStore
from corral_registry.testing import FakeRegistry, digest_of
from corral_registry.transfer.client import RegistryClient
from corral_registry.transfer.download import DigestMismatch

FAST = TransferSettings(part_min=64 << 10, part_max=256 << 10, retries=2, backoff_seconds=0.01, stall_seconds=2)


def blob(size: int, seed: int = 0) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32)


class Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@pytest.fixture
def registry_url(tmp_path: Path) -> Iterator[str]:
    """Our own /v2 registry on a free loopback port (filesystem + SQLite)."""
    settings = RegistrySettings(models_dir=tmp_path / "unused", home=tmp_path / "reghome",
                                registry_data=tmp_path / "registry",
                                storage=StorageSettings(driver="filesystem", root=tmp_path / "registry")).standalone()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)


class BlobReads:
    """ASGI middleware around the registry: records each blob GET's Range and the body bytes it was sent, and can
    cut every answer after ``cut`` bytes (the connection closes mid-body, as when a network or a worker dies)."""

    def __init__(self, app: object) -> None:
        self.app, self.cut = app, None
        self.reads: list[tuple[str, str, int]] = []  # (blob path, Range asked, body bytes sent)

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or "/blobs/sha256:" not in scope["path"]:
            return await self.app(scope, receive, send)
        sent, cut = [0], self.cut
        wanted = dict(scope["headers"]).get(b"range", b"").decode()

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if cut is not None and sent[0] + len(body) > cut:
                    await send({**message, "body": body[:cut - sent[0]], "more_body": True})
                    sent[0] = cut
                    raise ConnectionAbortedError("cut mid-body")
                sent[0] += len(body)
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.reads.append((scope["path"], wanted, sent[0]))


def _serve(app: object) -> tuple[Server, threading.Thread, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    return server, thread, f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def recorded_registry(tmp_path: Path) -> Iterator[tuple[str, BlobReads]]:
    """Our own /v2 registry on loopback, its blob reads recorded (and cut on demand)."""
    settings = RegistrySettings(models_dir=tmp_path / "unused", home=tmp_path / "reghome",
                                registry_data=tmp_path / "registry",
                                storage=StorageSettings(driver="filesystem", root=tmp_path / "registry")).standalone()
    reads = BlobReads(create_app(settings))
    server, thread, host = _serve(reads)
    yield host, reads
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry().start()
    yield registry
    registry.stop()


def store_at(path: Path) -> ModelStore:
    return ModelStore(path)


def local_model(store: ModelStore, name: str, weights: bytes) -> bytes:
    """A model in the store as create writes it; returns the manifest bytes."""
    config_digest, _ = store.put_bytes(b'{"model_format":"gguf","model_family":"llama"}')
    weights_digest, _ = store.put_bytes(weights)
    template_digest, _ = store.put_bytes(b"{{ .Prompt }}")
    manifest = Manifest(Layer(media_types.CONFIG, config_digest, store.blob_path(config_digest).stat().st_size),
                        (Layer(media_types.MODEL, weights_digest, len(weights)),
                         Layer(media_types.TEMPLATE, template_digest, 13)))
    store.put_manifest(ModelName.parse(name), manifest)
    return manifest.to_bytes()


def statuses(reporter: JobReporter) -> list[str]:
    """Status texts without consecutive repeats."""
    out: list[str] = []
    for event in reporter.events:
        if not out or out[-1] != event["status"]:
            out.append(event["status"])
    return out


def pull(store: ModelStore, name: str, settings: TransferSettings = FAST, home: Path | None = None) -> JobReporter:
    reporter = JobReporter()
    client = RegistryClient(settings, home or store.root.parent / "home")
    try:
        pull_model(store, client, settings, TransferRequest(model=name, insecure=True), reporter)
    finally:
        client.close()
    return reporter


def push(store: ModelStore, name: str, settings: TransferSettings = FAST) -> JobReporter:
    reporter = JobReporter()
    client = RegistryClient(settings, store.root.parent / "home")
    try:
        push_model(store, client, settings, TransferRequest(model=name, insecure=True), reporter)
    finally:
        client.close()
    return reporter


def files_under(path: Path) -> set[str]:
    """Files a pull left behind (the store's empty GC lock file aside)."""
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != ".gc.lock"}


# --- round trips through our own registry ---------------------------------------------------------
def test_push_then_pull_round_trips_byte_for_byte(tmp_path: Path, registry_url: str) -> None:
    a, b = store_at(tmp_path / "a"), store_at(tmp_path / "b")
    name = f"{registry_url}/team/assistant:v1"
    weights = blob(700_000)
    raw = local_model(a, name, weights)
    pushed = push(a, name)
    assert statuses(pushed)[0] == "retrieving manifest"
    assert statuses(pushed)[-2:] == ["pushing manifest", "success"]
    assert any(e["status"].startswith("pushing ") and e.get("digest") for e in pushed.events)
    pulled = pull(b, name)
    seen = statuses(pulled)
    assert seen[0] == "pulling manifest"
    assert seen[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layer_events = [e for e in pulled.events if "digest" in e]
    assert {e["status"] for e in layer_events} == {f"pulling {Digest.parse(e['digest']).hex[:12]}"
                                                   for e in layer_events}
    assert all(e.get("completed", 0) <= e["total"] for e in layer_events)
    stored = b.get(ModelName.parse(name))
    assert stored is not None and stored.raw == raw
    assert b.blob_path(Digest.parse(digest_of(weights))).read_bytes() == weights
    assert not [f for f in files_under(b.root / "blobs") if "partial" in f]


def test_an_interrupted_pull_resumes_asking_the_registry_only_for_the_missing_bytes(
        tmp_path: Path, recorded_registry: tuple[str, BlobReads]) -> None:
    host, reads = recorded_registry
    a, b = store_at(tmp_path / "a"), store_at(tmp_path / "b")
    name = f"{host}/team/resume:v1"
    weights = blob(1_000_000, 21)
    local_model(a, name, weights)
    push(a, name)
    digest = Digest.parse(digest_of(weights))
    once = replace(FAST, retries=0)
    reads.cut = 20_000  # every part's answer breaks off after 20 kB
    with pytest.raises(BadGateway):
        pull(b, name, once)
    assert b.get(ModelName.parse(name)) is None
    parts = [json.loads(b.part_path(digest, n).read_text()) for n in range(16)]
    partial = b.partial_path(digest).read_bytes()
    done = sum(p["Completed"] for p in parts)
    assert 0 < done < len(weights)
    for p in parts:  # what a part's state says is on disk is the blob's bytes, and nothing lies past it
        start, end = p["Offset"], p["Offset"] + p["Size"]
        assert partial[start:start + p["Completed"]] == weights[start:start + p["Completed"]]
        assert not partial[start + p["Completed"]:end].strip(b"\0")
    reads.cut, reads.reads = None, []
    pull(b, name, once)
    weight_reads = [(wanted, sent) for path, wanted, sent in reads.reads if path.endswith(str(digest))]
    assert sorted(wanted for wanted, _ in weight_reads) == sorted(
        f"bytes={p['Offset'] + p['Completed']}-{p['Offset'] + p['Size'] - 1}"
        for p in parts if p["Completed"] < p["Size"])
    assert sum(sent for _, sent in weight_reads) == len(weights) - done
    assert b.blob_path(digest).read_bytes() == weights
    assert not [f for f in files_under(b.root / "blobs") if "partial" in f]


def test_a_blob_read_whose_client_hangs_up_stops_early(tmp_path: Path,
                                                       recorded_registry: tuple[str, BlobReads]) -> None:
    host, reads = recorded_registry
    weights = blob(32 << 20, 22)
    digest = digest_of(weights)
    url = f"http://{host}/v2/team/big/blobs/{digest}"
    assert httpx.post(f"http://{host}/v2/team/big/blobs/uploads/?digest={digest}", content=weights).status_code == 201
    with httpx.stream("GET", url) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # then hang up
    deadline = time.monotonic() + 30
    while not reads.reads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reads.reads and reads.reads[0][2] < len(weights) // 2


def test_second_push_skips_blobs_the_registry_has(tmp_path: Path, registry_url: str) -> None:
    a = store_at(tmp_path / "a")
    name = f"{registry_url}/team/m:v1"
    local_model(a, name, blob(300_000))
    push(a, name)
    again = push(a, name)
    layer_events = [e for e in again.events if "digest" in e]
    assert layer_events and all(e["completed"] == e["total"] for e in layer_events if e.get("completed"))


def test_pushing_a_missing_model_says_so(tmp_path: Path, registry_url: str) -> None:
    reporter = JobReporter()
    with pytest.raises(NotFound):
        push_model(store_at(tmp_path / "a"), RegistryClient(FAST, tmp_path / "home"), FAST,
                   TransferRequest(model=f"{registry_url}/team/none:v1", insecure=True), reporter)
    assert statuses(reporter) == ["retrieving manifest", "couldn't retrieve manifest"]


def test_pull_of_an_unknown_model(tmp_path: Path, registry_url: str) -> None:
    with pytest.raises(NotFound, match="pull model manifest: file does not exist"):
        pull(store_at(tmp_path / "b"), f"{registry_url}/team/none:v1")


def test_http_names_need_insecure(tmp_path: Path) -> None:
    client = RegistryClient(FAST, tmp_path / "home")
    with pytest.raises(BadRequest, match="insecure protocol http"):
        pull_model(store_at(tmp_path / "b"), client, FAST, TransferRequest(model="http://127.0.0.1:1/a/b"),
                   JobReporter())
    with pytest.raises(BadRequest, match="invalid model name"):
        pull_model(store_at(tmp_path / "b"), client, FAST, TransferRequest(model="../../etc/passwd", insecure=True),
                   JobReporter())


# --- downloads: parts, resume, retries --------------------------------------------------------------
def test_large_blobs_download_in_parallel_ranged_parts(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(1_000_000, 1)
    fake.add_model("team/m", "v1", [weights])
    store = store_at(tmp_path / "b")
    pull(store, f"{fake.host}/team/m:v1")
    ranges = [s.headers.get("Range") for s in fake.requests("GET", digest_of(weights))]
    assert len(ranges) == 16 and all(r and r.startswith("bytes=") for r in ranges)
    assert store.blob_path(Digest.parse(digest_of(weights))).read_bytes() == weights


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(200_000, 2)
    digest = digest_of(weights)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.drop_after[digest] = 96 << 10
    store, once = store_at(tmp_path / "b"), replace(FAST, retries=0, part_min=1 << 20)
    with pytest.raises(BadGateway):
        pull(store, f"{fake.host}/team/m:v1", once)
    state = json.loads((store.root / "blobs" / f"sha256-{digest[7:]}-partial-0").read_text())
    assert state["Completed"] >= 64 << 10
    assert store.get(ModelName.parse(f"{fake.host}/team/m:v1")) is None
    pull(store, f"{fake.host}/team/m:v1", once)
    last = fake.requests("GET", digest)[-1]
    assert last.headers["Range"] == f"bytes={state['Completed']}-{len(weights) - 1}"
    assert store.blob_path(Digest.parse(digest)).read_bytes() == weights


def test_a_dropped_connection_is_retried_within_one_pull(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(200_000, 3)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.drop_after[digest_of(weights)] = 32 << 10
    store = store_at(tmp_path / "b")
    pull(store, f"{fake.host}/team/m:v1", replace(FAST, part_min=1 << 20))
    assert store.blob_path(Digest.parse(digest_of(weights))).read_bytes() == weights


def test_server_errors_are_retried_with_backoff(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(50_000, 4)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.fail_status[digest_of(weights)] = [503, 502]
    store = store_at(tmp_path / "b")
    pull(store, f"{fake.host}/team/m:v1")
    assert len(fake.requests("GET", digest_of(weights))) == 3


def test_a_server_that_ignores_range_still_gives_the_right_blob(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(300_000, 5)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.ignore_range = True
    store = store_at(tmp_path / "b")
    pull(store, f"{fake.host}/team/m:v1")
    assert store.blob_path(Digest.parse(digest_of(weights))).read_bytes() == weights


def test_stalled_downloads_are_abandoned_and_retried(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(64 << 10, 6)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.bytes_per_second = 4 << 10  # 16 KiB chunks every 4 s: longer than the stall limit
    store = store_at(tmp_path / "b")
    settings = replace(FAST, stall_seconds=0.5, retries=1)
    with pytest.raises(BadGateway):
        pull(store, f"{fake.host}/team/m:v1", settings)
    assert len(fake.requests("GET", digest_of(weights))) == 2


def _leave_partial(store: ModelStore, digest: str, size: int, completed: int) -> Path:
    """A zero-filled partial download of digest with one part's state, as an interrupted pull leaves it."""
    partial = store.root / "blobs" / f"sha256-{digest[7:]}-partial"
    partial.write_bytes(b"\0" * completed)
    partial.with_name(partial.name + "-0").write_text(json.dumps({"N": 0, "Offset": 0, "Size": size,
                                                                  "Completed": completed}))
    return partial


def test_a_corrupt_partial_file_is_detected_and_discarded(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(100_000, 7)
    digest = digest_of(weights)
    fake.add_model("team/m", "v1", [weights])
    store = store_at(tmp_path / "b")
    partial = _leave_partial(store, digest, size=100_000, completed=50_000)
    with pytest.raises(DigestMismatch, match="digest mismatch, file must be downloaded again"):
        pull(store, f"{fake.host}/team/m:v1", replace(FAST, part_min=1 << 20))
    assert not partial.exists()
    pull(store, f"{fake.host}/team/m:v1", replace(FAST, part_min=1 << 20))
    assert store.blob_path(Digest.parse(digest)).read_bytes() == weights


def test_partial_state_larger_than_the_blob_starts_over(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(10_000, 8)
    digest = digest_of(weights)
    fake.add_model("team/m", "v1", [weights])
    store = store_at(tmp_path / "b")
    _leave_partial(store, digest, size=20_000, completed=20_000)
    pull(store, f"{fake.host}/team/m:v1")
    assert store.blob_path(Digest.parse(digest)).read_bytes() == weights


# --- what must never be published ---------------------------------------------------------------------
def test_a_corrupted_blob_is_rejected_and_nothing_is_published(tmp_path: Path, fake: FakeRegistry) -> None:
    good, bad = blob(20_000, 9), blob(30_000, 10)
    fake.add_model("team/m", "v1", [good, bad])
    fake.behaviour.corrupt.add(digest_of(bad))
    store = store_at(tmp_path / "b")
    with pytest.raises(DigestMismatch):
        pull(store, f"{fake.host}/team/m:v1")
    assert store.get(ModelName.parse(f"{fake.host}/team/m:v1")) is None
    assert not store.has_blob(Digest.parse(digest_of(bad)))
    assert not any(digest_of(bad)[7:] in f for f in files_under(store.root))


def test_a_truncated_blob_is_rejected_before_anything_is_written(tmp_path: Path, fake: FakeRegistry) -> None:
    weights = blob(40_000, 11)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.truncate[digest_of(weights)] = 30_000
    store = store_at(tmp_path / "b")
    with pytest.raises(BadGateway, match="40000"):
        pull(store, f"{fake.host}/team/m:v1")
    assert files_under(store.root) == set()


@pytest.mark.parametrize("digest", ["../../../../../../tmp/canary", "sha256:../../../../canary",
                                    "sha256-" + "a" * 63 + "/", "sha256:" + "A" * 64 + "\n", "sha256:"])
@pytest.mark.parametrize("where", ["layer", "config"])
def test_path_trick_digests_are_rejected_before_any_byte_is_written(tmp_path: Path, fake: FakeRegistry,
                                                                    digest: str, where: str) -> None:
    canary = tmp_path / "canary"
    canary.write_text("keep me")
    entry = {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": 7}
    overrides = {"layers": [entry]} if where == "layer" else {"config": entry}
    fake.add_model("team/m", "v1", [b"payload"], overrides=overrides)
    store = store_at(tmp_path / "models")
    with pytest.raises(BadGateway, match="invalid"):
        pull(store, f"{fake.host}/team/m:v1")
    assert canary.read_text() == "keep me"
    assert files_under(store.root) == set()
    assert fake.requests("GET", "/blobs/") == [] and fake.requests("HEAD", "/blobs/") == []


@pytest.mark.parametrize("overrides", [{"layers": []}, {"config": None}, {"layers": [{"digest": "x"}]},
                                       {"layers": [{"mediaType": "m", "digest": digest_of(b"a"), "size": -1}]},
                                       {"layers": [{"mediaType": "m", "digest": digest_of(b"a"), "size": 2**63}]},
                                       {"layers": "many"}])
def test_spoofed_manifests_fail_cleanly(tmp_path: Path, fake: FakeRegistry, overrides: dict) -> None:
    fake.add_model("team/m", "v1", [b"x"], overrides=overrides)
    store = store_at(tmp_path / "models")
    with pytest.raises(BadGateway):
        pull(store, f"{fake.host}/team/m:v1")
    assert files_under(store.root) == set()


def test_oversized_and_compressed_bomb_manifests_are_cut_off(tmp_path: Path, fake: FakeRegistry) -> None:
    import gzip

    bomb = gzip.compress(b" " * (64 << 20))
    fake.manifests[("team/m", "v1")] = bomb
    original = fake.server.RequestHandlerClass._send

    def send(self, status, body=b"", headers=None):  # noqa: ANN001
        if body is bomb:
            headers = {**(headers or {}), "Content-Encoding": "gzip"}
        return original(self, status, body, headers)

    fake.server.RequestHandlerClass._send = send
    with pytest.raises(BadGateway, match="larger than"):
        pull(store_at(tmp_path / "models"), f"{fake.host}/team/m:v1")


def test_missing_free_space_is_refused_before_downloading(tmp_path: Path, fake: FakeRegistry,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    fake.add_model("team/m", "v1", [blob(100_000, 12)])
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    store = store_at(tmp_path / "models")
    with pytest.raises(InsufficientStorage, match="not enough disk space"):
        pull(store, f"{fake.host}/team/m:v1")
    assert fake.requests("GET", "/blobs/") == []


# --- single flight ------------------------------------------------------------------------------------
def test_concurrent_pulls_download_each_blob_once(tmp_path: Path, fake: FakeRegistry) -> None:
    layers = [blob(150_000, 13), blob(90_000, 14)]
    fake.add_model("team/m", "v1", layers)
    fake.add_model("team/m", "v2", layers)  # another tag sharing the blobs
    fake.behaviour.bytes_per_second = 600_000
    root = tmp_path / "models"
    settings = replace(FAST, part_min=1 << 20)

    def run(tag: str) -> None:
        pull(store_at(root), f"{fake.host}/team/m:{tag}", settings)

    assert run_together(run, [("v1",), ("v2",), ("v1",)]) == []
    for data in layers:
        assert len(fake.requests("GET", digest_of(data))) == 1
        assert store_at(root).blob_path(Digest.parse(digest_of(data))).read_bytes() == data
    assert not [f for f in files_under(root / "blobs") if "partial" in f]


# --- auth and hosts -----------------------------------------------------------------------------------
def test_token_challenge_is_answered_with_an_ed25519_signature(tmp_path: Path, fake: FakeRegistry) -> None:
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    weights = blob(10_000, 15)
    fake.add_model("team/m", "v1", [weights])
    fake.behaviour.token = "tok-123"
    store, home = store_at(tmp_path / "models"), tmp_path / "home"
    pull(store, f"{fake.host}/team/m:v1", home=home)
    assert len(fake.token_requests) == 1
    request = fake.token_requests[0]
    query = request.path.split("?", 1)[1]
    assert [kv.split("=")[0] for kv in query.split("&")] == ["nonce", "scope", "service", "ts"]
    pubkey, signature = request.headers["Authorization"].split(":")
    public_line = (home / "id_ed25519.pub").read_text().split()
    assert public_line[0] == "ssh-ed25519" and public_line[1] == pubkey
    assert (home / "id_ed25519").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert oct((home / "id_ed25519").stat().st_mode & 0o777) == "0o600"
    signed = f"GET,http://{fake.host}{request.path},{base64.b64encode(hashlib.sha256(b'').hexdigest().encode()).decode()}"
    load_ssh_public_key(" ".join(public_line[:2]).encode()).verify(base64.b64decode(signature), signed.encode())
    authorized = [s for s in fake.seen if s.headers.get("Authorization") == "Bearer tok-123"]
    assert authorized and store.get(ModelName.parse(f"{fake.host}/team/m:v1")) is not None


def test_an_api_key_is_sent_to_the_realm_instead_of_a_signature(tmp_path: Path, fake: FakeRegistry) -> None:
    fake.add_model("team/m", "v1", [b"w"])
    fake.behaviour.token = "t"
    pull(store_at(tmp_path / "models"), f"{fake.host}/team/m:v1", replace(FAST, api_key="olk_secret"))
    assert fake.token_requests[0].headers["Authorization"] == "Bearer olk_secret"


@pytest.mark.parametrize("realm_host", ["other", "port", "name"])
def test_a_realm_on_another_host_gets_no_credentials(tmp_path: Path, fake: FakeRegistry, realm_host: str) -> None:
    attacker = FakeRegistry().start()
    try:
        fake.add_model("team/m", "v1", [b"w"])
        fake.behaviour.token = "t"
        port = fake.server.server_address[1]
        fake.behaviour.realm = {"other": f"http://{attacker.host}/token",
                                "port": f"http://127.0.0.1:{port + 1}/token",
                                "name": f"http://localhost:{port}/token"}[realm_host]
        with pytest.raises(Unauthorized, match="does not match original host"):
            pull(store_at(tmp_path / "models"), f"{fake.host}/team/m:v1")
        assert attacker.seen == [] and fake.token_requests == []
    finally:
        attacker.stop()


def test_redirects_to_another_host_carry_no_credentials(tmp_path: Path, fake: FakeRegistry) -> None:
    storage = FakeRegistry().start()
    try:
        weights = blob(20_000, 16)
        fake.add_model("team/m", "v1", [weights])
        storage.add_model("team/m", "v1", [weights])
        fake.behaviour.token = "t"
        fake.behaviour.blob_redirect = f"http://{storage.host}/v2/team/m/blobs"
        store = store_at(tmp_path / "models")
        pull(store, f"{fake.host}/team/m:v1")
        assert storage.requests("GET", digest_of(weights))
        assert all("Authorization" not in s.headers for s in storage.seen)
        assert store.blob_path(Digest.parse(digest_of(weights))).read_bytes() == weights
    finally:
        storage.stop()


@pytest.mark.parametrize("name", ["10.0.0.5:6379/x/y", "169.254.169.254/latest/meta-data", "192.168.1.1/a/b",
                                  "0.0.0.0:80/a/b", "100.64.0.1/a/b"])
def test_private_and_metadata_hosts_are_refused_before_connecting(tmp_path: Path, name: str) -> None:
    with pytest.raises(Forbidden, match="non-public"):
        pull(store_at(tmp_path / "models"), name)


def test_loopback_can_be_refused_and_private_hosts_allow_listed(tmp_path: Path, fake: FakeRegistry) -> None:
    fake.add_model("team/m", "v1", [b"w"])
    with pytest.raises(Forbidden):
        pull(store_at(tmp_path / "a"), f"{fake.host}/team/m:v1", replace(FAST, allow_loopback=False))
    pull(store_at(tmp_path / "b"), f"{fake.host}/team/m:v1", replace(FAST, allow_loopback=False,
                                                                      allow_hosts=(fake.host,)))
