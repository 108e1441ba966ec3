"""SSRF-safe HTTP GET: resolve once, check every address, connect only to the checked addresses.

httpcore is driven directly with a network backend pinned to the validated addresses, so the
socket goes where the policy looked even if DNS answers differently a moment later (rebinding);
the Host header and TLS SNI keep the original name. Redirects are followed by hand, each hop
checked again. Bodies are counted after decompression and cut at the cap; time to first byte,
silence and total time are limited (security.md §4.3-4.5).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import certifi
import httpcore

from corral_common.errors import AppError, BadGateway, PayloadTooLarge, UnsupportedMediaType
from corral_common.logs import get_logger

from corral_websearch.net.addresses import IPAddress
from corral_websearch.net.policy import FetchPolicy, Target
from corral_websearch.net.resolver import Resolver
from corral_websearch.settings import FetchLimits

USER_AGENT = "Mozilla/5.0 (compatible; corral-websearch/0.1)"
ACCEPT = ("text/html,application/xhtml+xml,text/markdown;q=0.9,text/plain;q=0.9,application/pdf;q=0.8,"
          "application/json;q=0.7,*/*;q=0.1")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
log = get_logger("corral.websearch.fetch")


class FetchTimeout(AppError):
    """The page took too long: no first byte, too long a silence, or too long in total."""

    status = 504


@dataclass(frozen=True)
class Fetched:
    """One fetched response after redirects: where it ended up and its (decoded) body."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    redirects: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def human_bytes(size: int) -> str:
    """``5242880`` → ``5 MiB``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:g} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    return str(size)


def parse_content_type(value: str) -> tuple[str, str | None]:
    """``text/html; charset=UTF-8`` → (``text/html``, ``utf-8``)."""
    mime, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, val = param.strip().partition("=")
        if key.lower() == "charset" and val:
            charset = val.strip("\"' ").lower()
    return mime.strip().lower(), charset


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the addresses the policy checked, whatever host name httpcore asks for."""

    def __init__(self, addresses: Sequence[IPAddress], inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.addresses = list(addresses)
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        last: Exception = httpcore.ConnectError(f"no address for {host}")
        for ip in self.addresses:  # the name is ignored on purpose: only checked addresses are dialled
            try:
                return await self.inner.connect_tcp(str(ip), port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never fetched")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Decoder:
    """Content-Encoding decoding that never produces more than it is asked for (gzip bombs)."""

    def __init__(self, encoding: str, url: str) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self.inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self.inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
        else:
            raise BadGateway(f"{url} answered with an unsupported content encoding: {encoding}")
        self.url = url

    def feed(self, chunk: bytes, room: int) -> bytes:
        """Decode one chunk, producing at most ``room + 1`` bytes (one more means: over the cap)."""
        if self.inflater is None:
            return chunk
        try:
            return self.inflater.decompress(self.inflater.unconsumed_tail + chunk, room + 1)
        except zlib.error as exc:
            raise BadGateway(f"{self.url} sent a corrupt compressed body: {exc}") from None


class SafeFetcher:
    """GET a URL under the fetch policy and limits; the one way corral reaches the web."""

    def __init__(self, policy: FetchPolicy, resolver: Resolver, limits: FetchLimits,
                 backend_factory: Callable[[Sequence[IPAddress]], httpcore.AsyncNetworkBackend] = PinnedBackend,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.limits = limits
        self.backend_factory = backend_factory
        self.ssl_context = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._slots = asyncio.Semaphore(limits.concurrency)

    async def fetch(self, url: str, accept: Callable[[str], bool] | None = None) -> Fetched:
        """Fetch ``url`` (redirects followed and re-checked); ``accept`` vets a 2xx content type."""
        target = self.policy.check_url(url)
        total = self.limits.total_timeout
        async with self._slots:
            try:
                async with asyncio.timeout(total):
                    return await self._follow(target, accept)
            except TimeoutError:
                raise FetchTimeout(f"fetching {target.url} took longer than {total:g}s") from None

    async def _follow(self, target: Target, accept: Callable[[str], bool] | None) -> Fetched:
        redirects: list[str] = []
        while True:
            addresses = [target.literal] if target.literal else await self.resolver.resolve(target.host, target.port)
            self.policy.check_addresses(target, addresses)
            result = await self._get(target, addresses, accept, tuple(redirects))
            if isinstance(result, Fetched):
                return result
            if len(redirects) >= self.limits.max_redirects:
                raise BadGateway(f"{redirects[0] if redirects else target.url} redirected more than "
                                 f"{self.limits.max_redirects} times")
            redirects.append(target.url)
            target = self.policy.check_url(urllib.parse.urljoin(target.url, result))

    async def _get(self, target: Target, addresses: list[IPAddress], accept: Callable[[str], bool] | None,
                   redirects: tuple[str, ...]) -> Fetched | str:
        """One hop: the final response, or the Location of a redirect."""
        pool = httpcore.AsyncConnectionPool(ssl_context=self.ssl_context, max_connections=1, retries=0,
                                            network_backend=self.backend_factory(addresses))
        try:
            async with pool, pool.stream("GET", target.url, headers=self._headers(),
                                         extensions={"timeout": self._timeouts()}) as response:
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
                if response.status in REDIRECT_STATUSES and headers.get("location"):
                    return headers["location"]
                mime, charset = parse_content_type(headers.get("content-type", ""))
                ok = 200 <= response.status < 300
                if ok and accept is not None and not accept(mime):
                    raise UnsupportedMediaType(f"{target.url} is {mime or 'of no declared type'}, which web_fetch "
                                               "does not read (HTML, text, Markdown, JSON, XML and PDF are read)")
                self._check_length(target, headers.get("content-length", ""))
                body = await self._read(target, response.aiter_stream(), headers.get("content-encoding", ""))
                return Fetched(target.url, response.status, mime, charset, body, redirects, headers)
        except httpcore.ConnectTimeout:
            raise FetchTimeout(f"could not connect to {target.host} within {self.limits.connect_timeout:g}s") from None
        except httpcore.ReadTimeout:
            raise FetchTimeout(f"{target.url} sent nothing for {self.limits.read_timeout:g}s") from None
        except httpcore.ConnectError as exc:
            raise BadGateway(f"could not connect to {target.host}: {exc or 'connection failed'}") from None
        except (httpcore.ProtocolError, httpcore.NetworkError) as exc:
            raise BadGateway(f"{target.url} sent a malformed or broken response: {exc or type(exc).__name__}") from None

    def _headers(self) -> list[tuple[str, str]]:
        # No cookies or Authorization ever: nothing to leak across redirects.
        return [("User-Agent", USER_AGENT), ("Accept", ACCEPT), ("Accept-Encoding", "gzip, deflate")]

    def _timeouts(self) -> dict[str, float]:
        limits = self.limits
        return {"connect": limits.connect_timeout, "read": limits.read_timeout, "write": limits.read_timeout,
                "pool": limits.connect_timeout}

    def _too_large(self, target: Target) -> PayloadTooLarge:
        return PayloadTooLarge(f"{target.url} is larger than the {human_bytes(self.limits.max_bytes)} "
                               "web_fetch limit; the download was cut off")

    def _check_length(self, target: Target, declared: str) -> None:
        if declared.strip().isdigit() and int(declared) > self.limits.max_bytes:
            raise self._too_large(target)

    async def _read(self, target: Target, chunks: AsyncIterator[bytes], encoding: str) -> bytes:
        """The decoded body, refused as soon as it passes the cap."""
        decoder, parts, size = _Decoder(encoding, target.url), [], 0
        async for chunk in chunks:
            data = decoder.feed(chunk, self.limits.max_bytes - size)
            size += len(data)
            if size > self.limits.max_bytes:
                raise self._too_large(target)
            parts.append(data)
        return b"".join(parts)
