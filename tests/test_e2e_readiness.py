"""/readyz against real dependencies: it turns 503 naming what went away while /healthz stays 200, then recovers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from corral_cli.supervisor import free_port
from corral_common.testing.backends import port_open, postgres_schema

pytestmark = pytest.mark.e2e


class TcpRelay:
    """A TCP relay on a fixed loopback port to a real server, that can be cut (every connection too) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        """Listen and relay."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone would not
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _eventually(probe: Callable[[], object], want: Callable[[object], bool], timeout: float = 15) -> object:
    """Poll (past the 1 s readiness cache) until ``want`` holds; the last answer either way."""
    deadline = time.monotonic() + timeout
    answer = probe()
    while not want(answer) and time.monotonic() < deadline:
        time.sleep(0.3)
        answer = probe()
    return answer


def _state(client: TestClient) -> tuple[int, int, dict]:
    ready = client.get("/readyz")
    return client.get("/healthz").status_code, ready.status_code, ready.json()


@pytest.mark.skipif(not port_open("127.0.0.1", 5432), reason="PostgreSQL is not running on 127.0.0.1:5432")
def test_registry_readiness_follows_its_postgres(tmp_path: Path) -> None:
    from corral_registry.main import create_app
    from corral_registry.settings import RegistrySettings

    relay = TcpRelay(("127.0.0.1", 5432))
    relay.start()
    with postgres_schema("readyz") as url:
        env = {"CORRAL_HOME": str(tmp_path / "home"), "OLLAMA_MODELS": str(tmp_path / "models"),
               "CORRAL_DATABASE_URL": url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")}
        try:
            with TestClient(create_app(RegistrySettings.from_env(env))) as client:
                assert _state(client) == (200, 200, {"status": "ready", "checks": {
                    "database": "ok", "broker": "ok", "result_backend": "ok", "models_dir": "ok"}})
                relay.stop()
                live, status, body = _eventually(lambda: _state(client), lambda s: s[1] == 503)
                assert (live, status, body["status"]) == (200, 503, "not ready")
                assert body["checks"]["database"].startswith("down: ") and body["checks"]["broker"] == "ok"
                relay.start()
                assert _eventually(lambda: _state(client), lambda s: s[1] == 200)[:2] == (200, 200)
        finally:
            relay.stop()


@contextmanager
def _inference_on(port: int, models: Path) -> Iterator[None]:
    """The real inference service on a port, in a thread."""
    from corral_inference.main import create_app
    from corral_inference.settings import InferenceSettings

    app = create_app(InferenceSettings.from_env({"OLLAMA_MODELS": str(models)}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_gateway_readiness_names_a_stopped_inference_service(tmp_path: Path) -> None:
    from corral_api.auth import GatewayAuthSettings
    from corral_api.main import create_app
    from corral_api.settings import ApiSettings

    port = free_port()
    (tmp_path / "models").mkdir()
    settings = ApiSettings.from_env({"CORRAL_INFERENCE_URL": f"http://127.0.0.1:{port}",
                                     "CORRAL_READYZ_SKIP": "registry,auth,websearch"})
    app = create_app(settings, GatewayAuthSettings())
    with TestClient(app, base_url="http://127.0.0.1:11434") as client:
        live, status, body = _state(client)
        assert (live, status, body["status"]) == (200, 503, "not ready")
        assert list(body["checks"]) == ["inference"] and body["checks"]["inference"].startswith("down: ")
        with _inference_on(port, tmp_path / "models"):
            answer = _eventually(lambda: _state(client), lambda s: s[1] == 200)
            assert answer == (200, 200, {"status": "ready", "checks": {"inference": "ok"}})
        assert _eventually(lambda: _state(client), lambda s: s[1] == 503)[1] == 503
