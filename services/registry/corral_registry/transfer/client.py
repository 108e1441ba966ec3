"""HTTP to registries: host policy before every connection, token auth on 401, bounded reads, manual redirects.

Redirects are never followed automatically: a blob read may be sent to storage on another host,
and credentials must not travel there (OLL-14), so callers resolve ``Location`` themselves with
``follow`` and the token is attached only to the registry's own host.
"""

from __future__ import annotations

import platform
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpcore
import httpx

from corral_common.errors import BadGateway, Unauthorized
from corral_common.net import env_proxies, proxy_for
from corral_common.version import OLLAMA_API_VERSION

from corral_registry.settings import TransferSettings
from corral_registry.transfer.auth import Challenge, KeyPair, TokenSource, parse_challenge, same_host
from corral_registry.transfer.remote import HostPolicy

MAX_REDIRECTS = 5
NETWORK_READ = 256 << 10  # 1 MiB was no faster, and 16 parallel parts then held ~100 MiB in malloc arenas
BODY_READ = 1 << 20  # the most one read of a blob body asks the socket for (recv returns what has arrived)
Content = bytes | Callable[[], Iterable[bytes]] | None


class ResponseTooLarge(BadGateway):
    """A registry answer bigger than its cap (a manifest over 4 MiB, a decompression bomb)."""


def read_large_bodies() -> None:
    """Let httpcore read HTTP/1.1 bodies 256 KiB at a time rather than 64 KiB (no option exists for it).

    A blob of gigabytes then takes 4x fewer trips through httpcore, h11 and the download loop (their Python
    overhead was a large share of a pull's CPU on loopback); a read still returns what the socket holds, so small
    answers are unaffected, and a part's buffer is at most this size."""
    from httpcore._sync import http11

    connection = getattr(http11, "HTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", NETWORK_READ) < NETWORK_READ:
        connection.READ_NUM_BYTES = NETWORK_READ


def raw_body(response: httpx.Response, timeout: float | None) -> Iterator[bytes]:
    """A response's body bytes as they arrive: straight from the connection when Content-Length alone frames it.

    Through httpx every byte is copied four more times inside h11 (into its receive buffer, two slices, then
    ``bytes``), which made up most of a loopback pull's CPU. A plain HTTP/1.x body is instead read from the
    connection itself (httpcore's ``network_stream`` extension, TLS included): h11 first gives up what it had
    already buffered, then each read is one ``recv``. h11 then still expects the rest of the message, so closing
    the response closes the connection instead of pooling it, one new connection per blob part. Bodies framed
    any other way (chunked, compressed, no length) go through ``iter_raw``. A short body ends early, as with
    ``iter_raw``; network failures raise httpx's transport errors."""
    chunks = response.iter_raw()
    stream = response.extensions.get("network_stream")
    remaining = _plain_length(response)
    if stream is None or remaining is None:
        yield from chunks
        return
    first = next(chunks, b"")  # h11's buffered bytes, or its first read (never past Content-Length)
    remaining -= len(first)
    if first:
        yield first
    while remaining > 0:
        data = _read(stream, min(BODY_READ, remaining), timeout)
        if not data:
            return
        remaining -= len(data)
        yield data


def _plain_length(response: httpx.Response) -> int | None:
    """The body length when Content-Length alone frames an uncompressed HTTP/1.x body, else None."""
    length = response.headers.get("content-length", "")
    if (response.http_version not in ("HTTP/1.1", "HTTP/1.0") or not length.isdigit()
            or "transfer-encoding" in response.headers
            or response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")):
        return None
    return int(length)


def _read(stream: httpcore.NetworkStream, size: int, timeout: float | None) -> bytes:
    """One read from a connection, its failures as the httpx errors a caller of ``iter_raw`` would see."""
    try:
        return stream.read(size, timeout)
    except httpcore.TimeoutException as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from None
    except httpcore.NetworkError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from None


def user_agent() -> str:
    """Like Ollama's ``ollama/<ver> (<arch> <os>) Go/<ver>``."""
    return f"corral/{OLLAMA_API_VERSION} ({platform.machine()} {platform.system().lower()}) " \
           f"Python/{platform.python_version()}"


def read_bounded(response: httpx.Response, limit: int) -> bytes:
    """A streamed body, decoded if gzip/deflate, refused once it passes ``limit`` decoded bytes."""
    encoding = response.headers.get("content-encoding", "identity").lower().strip()
    if encoding not in ("identity", "", "gzip", "deflate"):
        raise BadGateway(f"registry answered with unsupported content encoding {encoding!r}")
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 32) if encoding in ("gzip", "deflate") else None
    out = bytearray()
    for chunk in response.iter_raw():
        while chunk:
            if decoder is None:
                piece, chunk = chunk, b""
            else:
                piece = decoder.decompress(chunk, limit + 1 - len(out))
                chunk = decoder.unconsumed_tail
            out += piece
            if len(out) > limit:
                raise ResponseTooLarge(f"registry response larger than {limit} bytes")
    return bytes(out)


class RegistryClient:
    """One registry conversation (a pull or a push): remembers the token per host."""

    def __init__(self, settings: TransferSettings, home: Path, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        read_large_bodies()
        self.policy = HostPolicy(settings.allow_hosts, settings.allow_loopback)
        self.tokens = TokenSource(KeyPair(home / "id_ed25519"), settings.api_key)
        self._bearer: dict[tuple[str, int], str] = {}
        self._allowed: set[tuple[str, int]] = set()
        self._transport = transport
        # HTTPS_PROXY (HTTP_PROXY for http) and NO_PROXY, read once per conversation; loopback is always reached
        # directly (as Go does). One client per route, so the route decided here is the one the request takes.
        self.proxies = env_proxies()
        self._clients: dict[str | None, httpx.Client] = {}

    def close(self) -> None:
        """Release connections."""
        for client in self._clients.values():
            client.close()

    @staticmethod
    def _key(url: httpx.URL) -> tuple[str, int]:
        return url.host.lower(), url.port or (443 if url.scheme == "https" else 80)

    def _proxy(self, url: httpx.URL) -> str | None:
        return proxy_for(str(url), self.proxies)

    def _client(self, url: httpx.URL) -> httpx.Client:
        """The client for url's route: direct, or through the proxy the environment names for it."""
        proxy = self._proxy(url)
        client = self._clients.get(proxy)
        if client is None:
            client = self._clients[proxy] = self._make_client(proxy)
        return client

    def _make_client(self, proxy: str | None) -> httpx.Client:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        # An explicit transport turns httpx's own proxy lookup off; trust_env keeps SSL_CERT_FILE/SSL_CERT_DIR.
        transport = self._transport or httpx.HTTPTransport(proxy=proxy, limits=limits, trust_env=True)
        timeout = httpx.Timeout(connect=10.0, read=self.settings.stall_seconds, write=self.settings.stall_seconds,
                                pool=60.0)
        return httpx.Client(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False,
                            headers={"User-Agent": user_agent(), "Accept-Encoding": "identity"})

    def _send(self, method: str, url: httpx.URL, headers: dict[str, str], content: Content,
              auth: bool) -> httpx.Response:
        headers = dict(headers)
        token = self._bearer.get(self._key(url)) if auth else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = self._client(url)
        body = content() if callable(content) else content
        return client.send(client.build_request(method, url, headers=headers, content=body), stream=True)

    def send(self, method: str, url: str | httpx.URL, headers: dict[str, str] | None = None,
             content: Content = None, auth: bool = True) -> httpx.Response:
        """One streamed request (close it); a 401 Bearer challenge is answered once with a same-host token."""
        target = httpx.URL(url)
        if self._key(target) not in self._allowed:
            # Through a proxy the name is the proxy's to resolve (it may be the only one that can).
            self.policy.check(str(target), resolve=self._proxy(target) is None)
            self._allowed.add(self._key(target))
        response = self._send(method, target, headers or {}, content, auth)
        if response.status_code != 401 or not auth:
            return response
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        response.close()
        if challenge is None:
            raise Unauthorized("unauthorized: access denied")
        self._bearer[self._key(target)] = self.tokens.fetch(self._client(target), challenge, target)
        response = self._send(method, target, headers or {}, content, auth)
        if response.status_code == 401:
            response.close()
            raise Unauthorized(denied_text(parse_challenge(response.headers.get("www-authenticate")) or challenge))
        return response

    def follow(self, method: str, url: str | httpx.URL, headers: dict[str, str] | None = None,
               origin: httpx.URL | None = None) -> tuple[httpx.Response, httpx.URL]:
        """A streamed request following redirects by hand; credentials only while on the origin host."""
        target, origin = httpx.URL(url), origin or httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = self.send(method, target, headers, auth=same_host(target, origin))
            if response.status_code not in (301, 302, 303, 307, 308) or "location" not in response.headers:
                return response, target
            response.close()
            target = target.join(response.headers["location"])
        raise BadGateway(f"too many redirects from {url}")

    def call(self, method: str, url: str | httpx.URL, headers: dict[str, str] | None = None,
             content: Content = None, auth: bool = True) -> "Answer":
        """A request whose body only matters as an error message (read bounded, then closed)."""
        response = self.send(method, url, headers, content, auth=auth)
        try:
            error = error_text(response) if response.status_code >= 400 else ""
        finally:
            response.close()
        return Answer(response.status_code, response.headers, error)

    @contextmanager
    def stream(self, method: str, url: str | httpx.URL,
               headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """``follow`` as a context manager that closes the response."""
        response, _ = self.follow(method, url, headers)
        try:
            yield response
        finally:
            response.close()


def denied_text(challenge: Challenge) -> str:
    """Ollama's ``unauthorized: access denied``, naming what the token lacked when the registry says so."""
    if challenge.scope:
        return f"unauthorized: access denied: the registry token does not grant {challenge.scope}"
    return "unauthorized: access denied"


@dataclass(frozen=True)
class Answer:
    """Status, headers and (for errors) the message of a closed response."""

    status_code: int
    headers: httpx.Headers
    error: str


def error_text(response: httpx.Response, limit: int = 64 << 10) -> str:
    """``<status>: <body>`` for an error answer (OCI error messages when present), bounded."""
    try:
        body = read_bounded(response, limit)
    except (BadGateway, httpx.HTTPError):
        body = b""
    try:
        errors = httpx.Response(200, content=body).json().get("errors") or []
        messages = "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        messages = ""
    return f"{response.status_code}: {messages or body.decode(errors='replace').strip()}"
