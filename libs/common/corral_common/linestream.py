"""A lean HTTP/1.1 client for one NDJSON stream from another service over plain HTTP (a token stream).

Read through httpx, every line of a stream passes httpx's, httpcore's and h11's layers, with a cancel scope per
read: about half of the gateway's CPU per streamed token, time taken from llama.cpp's threads on a small
machine. Here the response is parsed by httptools (the C parser uvicorn serves with) inside an asyncio protocol,
and lines are handed out as they complete. One connection per stream (``Connection: close``): nothing is pooled,
so closing the stream closes the connection, which is how the other service learns the client left.

The answer's size is bounded: a line longer than ``MAX_LINE`` or an error body longer than ``MAX_ERROR_BODY``
ends the stream with BadGateway; a consumer slower than the service pauses reading from the socket (TCP's own
flow control then holds back the sender) instead of buffering without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from corral_common.errors import BadGateway

MAX_LINE = 32 * 1024 * 1024  # a final event with a 128k-token context is about 1 MB
MAX_ERROR_BODY = 1024 * 1024
HIGH_WATER = 1024 * 1024  # bytes of complete lines held before reading pauses
LOW_WATER = HIGH_WATER // 4


@dataclass(frozen=True)
class Address:
    """Where a service listens (host as written in a URL, so an IPv6 literal keeps its brackets in ``netloc``)."""

    host: str
    port: int
    netloc: str


def plain_http(base_url: str) -> Address | None:
    """The address of a plain ``http://host:port`` base URL (None for https or anything else)."""
    url = urlsplit(base_url)
    if url.scheme != "http" or not url.hostname or url.path not in ("", "/") or url.username or url.password:
        return None
    return Address(url.hostname, url.port or 80, url.netloc)


class _Protocol(asyncio.Protocol):
    """Feeds the socket's bytes to httptools; its callbacks collect the status, complete lines and the end."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.lines: deque[bytes] = deque()
        self.held = 0  # bytes in self.lines
        self.partial = bytearray()  # the line being received; an error answer's whole body
        self.ended = False
        self.error: BaseException | None = None
        self.paused = False
        self.changed = asyncio.Event()  # set by every callback that reports something

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(BadGateway(f"{self.service} service sent a malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended:
            self._fail(BadGateway(f"{self.service} service stopped answering: {exc or 'connection closed'}"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.partial += body
        if self.status >= 400:
            if len(self.partial) > MAX_ERROR_BODY:
                self._fail(BadGateway(f"{self.service} service sent an error body over {MAX_ERROR_BODY} bytes"))
            return
        if b"\n" in body:
            *complete, rest = self.partial.split(b"\n")
            self.partial = bytearray(rest)
            self.lines.extend(complete)
            self.held += sum(map(len, complete))
            if self.held > HIGH_WATER and self.transport is not None:
                self.transport.pause_reading()
                self.paused = True
            self._wake()
        if len(self.partial) > MAX_LINE:
            self._fail(BadGateway(f"{self.service} service sent a line over {MAX_LINE} bytes"))

    def on_message_complete(self) -> None:
        if self.status < 400 and self.partial:
            self.lines.append(bytes(self.partial))
            self.partial.clear()
        self.ended = True
        self._wake()

    # helpers
    def _fail(self, error: BaseException) -> None:
        if self.error is None and not self.ended:
            self.error = error
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        self.changed.set()

    async def wait(self) -> None:
        """Until the next callback reports something."""
        self.changed.clear()
        await self.changed.wait()


class LineStream:
    """One request's NDJSON answer, line by line; ``close()`` ends it (and the connection) at any point."""

    def __init__(self, protocol: _Protocol) -> None:
        self._p = protocol

    @property
    def status(self) -> int:
        return self._p.status

    async def next_line(self) -> bytes | None:
        """The next complete line (without its newline), None at the end of the answer."""
        p = self._p
        while not p.lines:
            if p.error is not None:
                raise p.error
            if p.ended:
                return None
            await p.wait()
        line = p.lines.popleft()
        p.held -= len(line)
        if p.paused and p.held < LOW_WATER and p.transport is not None:
            p.paused = False
            p.transport.resume_reading()
        return line

    async def body(self) -> bytes:
        """The whole body of an error answer (bounded by MAX_ERROR_BODY)."""
        p = self._p
        while not p.ended:
            if p.error is not None:
                raise p.error
            await p.wait()
        return bytes(p.partial)

    def abort(self, error: BaseException) -> None:
        """End the stream with ``error`` (raised once the lines already received are read) and close it."""
        self._p._fail(error)

    def close(self) -> None:
        if self._p.transport is not None:
            self._p.transport.close()


def _clean(text: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"a line break or NUL in an internal request's head: {text[:80]!r}")
    return text


def request_bytes(address: Address, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST with a body, the connection closed after the answer; every head line is checked for line breaks."""
    head = [f"POST {path} HTTP/1.1", f"Host: {address.netloc}", f"Content-Length: {len(body)}", "Connection: close",
            *(f"{name}: {value}" for name, value in headers.items())]
    return "".join(_clean(line) + "\r\n" for line in head).encode("latin-1") + b"\r\n" + body


async def open_stream(address: Address, path: str, headers: dict[str, str], body: bytes, service: str,
                      connect_timeout: float) -> LineStream:
    """Connect, send the request and wait for the answer's status line and headers."""
    request = request_bytes(address, path, headers, body)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            transport, protocol = await loop.create_connection(lambda: _Protocol(service), address.host, address.port)
    except (OSError, TimeoutError) as exc:
        raise BadGateway(f"{service} service unavailable: {exc or type(exc).__name__}") from None
    stream = LineStream(protocol)
    try:
        transport.write(request)
        while not protocol.status:
            if protocol.error is not None:
                raise protocol.error
            await protocol.wait()
    except BaseException:
        stream.close()
        raise
    return stream
