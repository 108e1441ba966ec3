"""Test helpers of the model store, importable by any test folder.

``FakeRegistry`` is a scriptable remote registry on 127.0.0.1 for fault tests: it counts, throttles,
corrupts, truncates, ignores Range, demands tokens and redirects, as a misbehaving or hostile registry
would. ``put_blob`` and ``create_events`` fill a local ``ModelStore``; ``s3_driver`` is an S3 storage
driver on a fresh bucket of a moto server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from corral_common.digest import Digest
from corral_common.schemas import CreateRequest

from corral_registry.create import execute_create, plan_create
from corral_registry.store import ModelStore

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def digest_of(data: bytes) -> str:
    """The sha256 digest of data, as registries spell it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    """One request the registry received."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Behaviour:
    """Knobs a test turns."""

    bytes_per_second: int = 0            # throttle blob bodies
    corrupt: set[str] = field(default_factory=set)          # digests served with flipped bytes
    truncate: dict[str, int] = field(default_factory=dict)  # digest -> bytes actually served
    ignore_range: bool = False
    drop_after: dict[str, int] = field(default_factory=dict)  # digest -> close the connection after n bytes, once
    fail_status: dict[str, list[int]] = field(default_factory=dict)  # digest -> statuses to answer first
    token: str = ""                     # require "Bearer <token>"; 401 with a challenge otherwise
    realm: str = ""                     # the realm the challenge names (default: this server's /token)
    blob_redirect: str = ""             # 307 blob GETs to <blob_redirect>/<digest>


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-body (as the tests make them) are expected, not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FakeRegistry:
    """Serves ``manifests`` and ``blobs`` under any repository."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.blobs: dict[str, bytes] = {}
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self.token_requests: list[Seen] = []
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeRegistry":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_model(self, repo: str, tag: str, layers: list[bytes], config: bytes = b'{"model_format":"gguf"}',
                  overrides: dict[str, Any] | None = None) -> bytes:
        """Store blobs and a manifest naming them; returns the manifest bytes."""
        for data in (*layers, config):
            self.blobs[digest_of(data)] = data
        body = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": digest_of(config), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest_of(d),
                            "size": len(d)} for d in layers]}
        body.update(overrides or {})
        raw = json.dumps(body).encode()
        self.manifests[(repo, tag)] = raw
        return raw

    def requests(self, method: str, path_part: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and path_part in s.path]

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


def _handler(registry: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorized(self) -> bool:
            b = registry.behaviour
            if not b.token or self.headers.get("Authorization") == f"Bearer {b.token}":
                return True
            realm = b.realm or f"http://{registry.host}/token"
            challenge = f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"'
            self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            return False

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            registry.record(Seen(self.command, self.path, dict(self.headers)))
            if self.path.startswith("/token"):
                registry.token_requests.append(Seen(self.command, self.path, dict(self.headers)))
                return self._send(200, json.dumps({"token": registry.behaviour.token}).encode())
            if not self._authorized():
                return None
            match = re.fullmatch(r"/v2/([^/]+/[^/]+)/(manifests|blobs)/([^/?]+)", self.path.split("?")[0])
            if match is None:
                return self._send(404)
            repo, kind, ref = match.groups()
            if kind == "manifests":
                raw = registry.manifests.get((repo, ref))
                if raw is None:
                    return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                return self._send(200, raw, {"Content-Type": MANIFEST_TYPE, "Docker-Content-Digest": digest_of(raw)})
            return self._blob(ref)

        def _blob(self, digest: str) -> None:
            b = registry.behaviour
            data = registry.blobs.get(digest)
            if data is None:
                return self._send(404)
            statuses = b.fail_status.get(digest)
            if self.command == "GET" and statuses:
                return self._send(statuses.pop(0))
            if digest in b.corrupt:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            if digest in b.truncate:
                data = data[: b.truncate[digest]]
            if self.command == "GET" and b.blob_redirect:
                return self._send(307, headers={"Location": f"{b.blob_redirect}/{digest}"})
            start, end, status = 0, len(data) - 1, 200
            ranged = self.headers.get("Range")
            if ranged and not b.ignore_range and self.command == "GET":
                first, _, last = ranged.removeprefix("bytes=").partition("-")
                start, end, status = int(first), min(int(last) if last else len(data) - 1, len(data) - 1), 206
                if start >= len(data):
                    return self._send(416, headers={"Content-Range": f"bytes */{len(data)}"})
            body = data[start:end + 1]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Content-Digest", digest)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            if self.command == "HEAD":
                return None
            self._stream(digest, body)
            return None

        def _stream(self, digest: str, body: bytes) -> None:
            b = registry.behaviour
            limit = b.drop_after.pop(digest, None)
            step = 16 << 10
            for start in range(0, len(body), step):
                if limit is not None and start >= limit:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                try:
                    self.wfile.write(body[start:start + step])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if b.bytes_per_second:
                    time.sleep(step / b.bytes_per_second)

    return Handler


def s3_driver(endpoint: str, part_size: int = 5 << 20):  # noqa: ANN201 - boto3 is imported only when used
    """An S3 driver on a fresh bucket of the moto server at endpoint."""
    from corral_registry.storage.s3 import S3Config, S3Driver

    config = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", prefix="root", endpoint_url=endpoint,
                      region="us-east-1", access_key="test", secret_key="test", part_size=part_size)
    driver = S3Driver(config)
    driver.ensure_bucket()
    return driver


def put_blob(store: ModelStore, data: bytes) -> Digest:
    """Write data into the store as a blob (verified like an upload); returns its digest."""
    digest = Digest.of_bytes(data)

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    asyncio.run(store.write_blob(digest, chunks()))
    return digest


def create_events(store: ModelStore, **fields: Any) -> list[dict]:
    """Plan and run one create request on the store; returns its progress events as the wire sends them."""
    events: list[dict] = []
    plan = plan_create(store, CreateRequest.model_validate(fields))
    execute_create(store, plan, lambda event: events.append(event.wire()))
    return events
