"""Test kit of the websearch service: loopback websites, a connection-counting canary, a stub resolver
and a dial guard.

Every socket these tests open goes to 127.0.0.0/8: the stub resolver stands in for DNS, and the
guarded backend fails a test (instead of dialling) if a fetch ever tries any other address.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from corral_websearch.net.addresses import IPAddress
from corral_websearch.net.fetcher import PinnedBackend, SafeFetcher
from corral_websearch.net.policy import AllowList, FetchPolicy
from corral_websearch.settings import FetchLimits

Handler = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, site: "Site") -> None:
        self.site = site
        super().__init__(address, handler)

    def get_request(self):  # type: ignore[no-untyped-def]
        request = super().get_request()
        self.site.connections += 1
        return request

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """A client that hung up (a fetch that timed out, a capped read) is what these tests provoke: not an error
        to print from the handler's thread, which may outlive its test."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        site: Site = self.server.site  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        site.hits.append(path)
        route = site.routes.get(path)
        if route is None:
            send(self, "not found", status=404, content_type="text/plain")
        else:
            route(self)

    def log_message(self, *_args: object) -> None:
        pass


def send(handler: BaseHTTPRequestHandler, body: str | bytes, status: int = 200,
         content_type: str = "text/html; charset=utf-8", headers: Sequence[tuple[str, str]] = ()) -> None:
    """Write one complete response."""
    data = body.encode() if isinstance(body, str) else body
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    for key, value in headers:
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


def send_unbounded(handler: BaseHTTPRequestHandler, chunk: bytes, times: int,
                   content_type: str = "text/html") -> None:
    """Write chunk times over with no declared length, then close: only counting the bytes can stop it."""
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Connection", "close")
    handler.end_headers()
    try:
        for _ in range(times):
            handler.wfile.write(chunk)
    except OSError:
        pass  # the client stopped reading, as a capped fetch does


class Site:
    """A small website on a loopback address, in a thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, routes: dict[str, Handler] | None = None) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.hits: list[str] = []
        self.connections = 0
        self.server = _Server((host, port), _Handler, self)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port_on_both() -> int:
    """A port free on 127.0.0.1 and 127.0.0.2 (the rebinding test listens on both)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as other:
                other.bind(("127.0.0.2", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


class StubResolver:
    """DNS for tests: each name answers from a list (the last answer repeats); every call is recorded."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self.answers = {k: [[ipaddress.ip_address(a) for a in answer] for answer in v]
                        for k, v in (answers or {}).items()}
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        from corral_common.errors import BadGateway

        self.calls.append(host)
        answers = self.answers.get(host)
        if not answers:
            raise BadGateway(f"could not resolve host {host}: stub has no answer")
        return answers[min(self.calls.count(host), len(answers)) - 1]


class GuardedBackend(PinnedBackend):
    """A pinned backend that refuses to dial anything outside 127.0.0.0/8, recording what it dials."""

    dialled: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        for ip in self.addresses:
            if not (ip.version == 4 and ip in ipaddress.ip_network("127.0.0.0/8")):
                raise AssertionError(f"test tried to dial {ip}: only loopback may be contacted")
            GuardedBackend.dialled.append(f"{ip}:{port}")
        return await super().connect_tcp(host, port, timeout, local_address, socket_options)


def make_fetcher(allow: Sequence[str] = (), resolver: StubResolver | None = None, **limits: float) -> SafeFetcher:
    """A SafeFetcher with a stub resolver, the dial guard and small limits."""
    return SafeFetcher(FetchPolicy(AllowList(allow)), resolver or StubResolver(), FetchLimits(**limits),
                       backend_factory=GuardedBackend)
