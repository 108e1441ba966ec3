"""The lean NDJSON stream client, against a real uvicorn server on loopback (and a raw socket server where the
answer must be malformed or cut in a way no well-behaved server would write)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from corral_common import linestream
from corral_common.errors import BadGateway
from corral_common.shutdown import Shutdown, ShuttingDown

SEEN: dict[str, object] = {}


def _run(scenario: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """A test that runs ``scenario`` on a fresh event loop."""
    def test() -> None:
        asyncio.run(scenario())

    test.__name__, test.__doc__ = scenario.__name__, scenario.__doc__
    return test


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/lines")
    async def lines(request: Request):
        SEEN["headers"], SEEN["body"] = dict(request.headers), await request.body()
        count = int(request.query_params.get("n", "3"))

        async def gen() -> AsyncIterator[bytes]:
            for i in range(count):
                yield (json.dumps({"i": i}) + "\n").encode()
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="application/x-ndjson")

    @app.post("/split")
    async def split():
        async def gen() -> AsyncIterator[bytes]:  # one line over three writes, then one without a newline
            for piece in (b'{"a"', b':1', b'}\n{"b":2}\n{"c"', b":3}"):
                yield piece
                await asyncio.sleep(0.01)

        return StreamingResponse(gen(), media_type="application/x-ndjson")

    @app.post("/missing")
    async def missing():
        return JSONResponse({"error": "model 'x' not found"}, status_code=404)

    @app.post("/forever")
    async def forever(request: Request):
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b'{"first":true}\n'
                while True:
                    await asyncio.sleep(0.05)
                    yield b'{"more":true}\n'
            finally:
                SEEN["closed"] = True

        return StreamingResponse(gen(), media_type="application/x-ndjson")

    @app.post("/flood")
    async def flood():
        line = b'{"x":"' + b"y" * 1000 + b'"}\n'

        async def gen() -> AsyncIterator[bytes]:
            for _ in range(20_000):  # 20 MB: far more than the client may hold
                yield line
            SEEN["flood_done"] = True

        return StreamingResponse(gen(), media_type="application/x-ndjson")

    return app


@asynccontextmanager
async def _server() -> AsyncIterator[linestream.Address]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(), log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield linestream.plain_http(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await task


async def _open(address: linestream.Address, path: str, body: bytes = b"{}") -> linestream.LineStream:
    return await linestream.open_stream(address, path, {"content-type": "application/json", "X-Request-ID": "r1"},
                                        body, "svc", 5)


async def _all(stream: linestream.LineStream) -> list[bytes]:
    out = []
    while (line := await stream.next_line()) is not None:
        out.append(bytes(line))
    return out


@_run
async def test_lines_arrive_in_order_with_the_request_as_sent() -> None:
    async with _server() as address:
        stream = await _open(address, "/lines?n=5", b'{"prompt":"hi"}')
        assert stream.status == 200
        assert [json.loads(line) for line in await _all(stream)] == [{"i": i} for i in range(5)]
        stream.close()
    assert SEEN["body"] == b'{"prompt":"hi"}'
    assert SEEN["headers"]["x-request-id"] == "r1"
    assert SEEN["headers"]["host"] == address.netloc


@_run
async def test_a_line_split_over_writes_is_joined_and_a_last_line_without_newline_kept() -> None:
    async with _server() as address:
        stream = await _open(address, "/split")
        assert [json.loads(line) for line in await _all(stream)] == [{"a": 1}, {"b": 2}, {"c": 3}]


@_run
async def test_an_error_status_keeps_its_body() -> None:
    async with _server() as address:
        stream = await _open(address, "/missing")
        assert stream.status == 404
        assert json.loads(await stream.body()) == {"error": "model 'x' not found"}


@_run
async def test_closing_early_closes_the_connection_so_the_server_stops() -> None:
    SEEN.pop("closed", None)
    async with _server() as address:
        stream = await _open(address, "/forever")
        assert json.loads(await stream.next_line()) == {"first": True}
        stream.close()
        for _ in range(200):
            if SEEN.get("closed"):
                break
            await asyncio.sleep(0.02)
    assert SEEN.get("closed") is True


@_run
async def test_a_slow_reader_pauses_the_socket_instead_of_buffering_everything() -> None:
    SEEN.pop("flood_done", None)
    async with _server() as address:
        stream = await _open(address, "/flood")
        assert await stream.next_line() is not None
        await asyncio.sleep(1.0)  # the server writes as fast as it can; the client reads nothing meanwhile
        held = stream._p.held  # noqa: SLF001 (the bound under test)
        assert stream._p.paused  # noqa: SLF001
        assert held <= linestream.HIGH_WATER + 256 * 1024
        assert not SEEN.get("flood_done")
        count = 1 + len(await _all(stream))
        assert count == 20_000
        assert SEEN.get("flood_done")


@_run
async def test_an_abort_ends_the_wait_with_its_error() -> None:
    async with _server() as address:
        stream = await _open(address, "/forever")
        shutdown = Shutdown()
        unwatch = shutdown.watch(stream.abort)
        assert json.loads(await stream.next_line()) == {"first": True}
        asyncio.get_running_loop().call_later(0.01, shutdown.end_grace)
        with pytest.raises(ShuttingDown):
            while True:
                await stream.next_line()
        unwatch()


@_run
async def test_nothing_listening_is_a_bad_gateway() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(BadGateway, match="svc service unavailable"):
        await _open(linestream.plain_http(f"http://127.0.0.1:{port}"), "/lines")


@asynccontextmanager
async def _raw_server(answer: bytes, then_close: bool = True) -> AsyncIterator[linestream.Address]:
    """A server that reads the request head and writes ``answer`` as given."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        if then_close:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield linestream.plain_http(f"http://127.0.0.1:{port}")
    finally:
        server.close()


@_run
async def test_a_stream_cut_mid_answer_is_a_bad_gateway() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    async with _raw_server(head + b'7\r\n{"a":1}\r\n1\r\n\n\r\n') as address:
        stream = await _open(address, "/x")
        assert json.loads(await stream.next_line()) == {"a": 1}
        with pytest.raises(BadGateway, match="stopped answering"):
            await stream.next_line()


@_run
async def test_a_malformed_answer_is_a_bad_gateway() -> None:
    async with _raw_server(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", then_close=False) as address:
        stream = await _open(address, "/x")
        with pytest.raises(BadGateway, match="malformed"):
            await stream.next_line()


@_run
async def test_an_endless_line_is_refused() -> None:
    big = 2 * 1024 * 1024
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % big
    original = linestream.MAX_LINE
    linestream.MAX_LINE = 1024 * 1024
    try:
        async with _raw_server(head + b"x" * big) as address:
            stream = await _open(address, "/x")
            with pytest.raises(BadGateway, match="line over"):
                await stream.next_line()
    finally:
        linestream.MAX_LINE = original


def test_line_breaks_in_a_header_are_refused() -> None:
    address = linestream.plain_http("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        linestream.request_bytes(address, "/x", {"X-Request-ID": "a\r\nInjected: 1"}, b"")
    with pytest.raises(ValueError):
        linestream.request_bytes(address, "/x\r\nInjected: 1", {}, b"")


def test_only_plain_http_base_urls_take_the_lean_path() -> None:
    assert linestream.plain_http("http://127.0.0.1:11435") == linestream.Address("127.0.0.1", 11435, "127.0.0.1:11435")
    assert linestream.plain_http("http://[::1]:8080").host == "::1"
    assert linestream.plain_http("http://svc").port == 80
    for url in ("https://svc:443", "http://user:pw@svc", "http://svc/prefix", "unix:///tmp/s"):
        assert linestream.plain_http(url) is None
