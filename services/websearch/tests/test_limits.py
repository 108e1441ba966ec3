"""security.md §4 SSRF-5 and the issue's limits: size caps after decompression, slow pages, headers,
redirect loops and content types. Each failure is a clear error, never a hang or a huge allocation."""

from __future__ import annotations

import asyncio
import gzip
import time

import pytest

from corral_common.errors import AppError, BadGateway, PayloadTooLarge, UnsupportedMediaType
from corral_websearch.extract import readable
from corral_websearch.net.fetcher import FetchTimeout
from corral_websearch.testing import Site, make_fetcher, send, send_unbounded

KIB = 1024
LIMITS = {"max_bytes": 64 * KIB, "read_timeout": 0.5, "total_timeout": 1.5}


def _fetch(site: Site, path: str, **limits: float):  # type: ignore[no-untyped-def]
    fetcher = make_fetcher(("127.0.0.1",), **{**LIMITS, **limits})
    return asyncio.run(fetcher.fetch(site.url(path), accept=readable))


def _fails(site: Site, path: str, kind: type[AppError], **limits: float) -> AppError:
    with pytest.raises(kind) as caught:
        _fetch(site, path, **limits)
    return caught.value


def _endless(handler) -> None:  # type: ignore[no-untyped-def]
    """A body with no declared length that never ends (a "1 GB" download)."""
    send_unbounded(handler, b"<p>" + b"x" * 16 * KIB + b"</p>", 1024)


def _trickle(handler) -> None:  # type: ignore[no-untyped-def]
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    try:
        for _ in range(1000):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


def _many_headers(handler) -> None:  # type: ignore[no-untyped-def]
    handler.send_response(200)
    for i in range(10_000):
        handler.send_header(f"X-Filler-{i}", "y" * 8)
    handler.send_header("Content-Length", "2")
    handler.end_headers()
    handler.wfile.write(b"ok")


BOMB = gzip.compress(b"\0" * (32 * 1024 * KIB), compresslevel=9)  # 32 MiB of zeros, ~32 KiB on the wire


@pytest.fixture
def limits_site(site: Site) -> Site:
    site.routes.update({
        "/small": lambda h: send(h, "<title>t</title><p>hello</p>"),
        "/declared-huge": lambda h: (h.send_response(200), h.send_header("Content-Type", "text/html"),
                                     h.send_header("Content-Length", str(1 << 30)), h.end_headers()),
        "/endless": _endless,
        "/bomb": lambda h: send(h, BOMB, headers=[("Content-Encoding", "gzip")]),
        "/gzip-ok": lambda h: send(h, gzip.compress(b"<p>compressed fine</p>"), headers=[("Content-Encoding", "gzip")]),
        "/stall": lambda h: time.sleep(3),
        "/trickle": _trickle,
        "/headers": _many_headers,
        "/loop": lambda h: send(h, "", 302, headers=[("Location", "/loop")]),
        "/image": lambda h: send(h, b"\x89PNG....", content_type="image/png"),
        "/brotli": lambda h: send(h, b"xx", headers=[("Content-Encoding", "br")]),
    })
    return site


def test_small_pages_and_gzip_pass(limits_site: Site) -> None:
    assert b"hello" in _fetch(limits_site, "/small").body
    assert _fetch(limits_site, "/gzip-ok").body == b"<p>compressed fine</p>"


def test_a_declared_oversized_body_is_refused_before_reading(limits_site: Site) -> None:
    error = _fails(limits_site, "/declared-huge", PayloadTooLarge)
    assert error.status == 413 and "larger than the 64 KiB web_fetch limit" in error.message


def test_an_endless_body_is_cut_off_at_the_cap(limits_site: Site) -> None:
    error = _fails(limits_site, "/endless", PayloadTooLarge)
    assert "cut off" in error.message


def test_a_gzip_bomb_is_cut_off_after_decompression(limits_site: Site) -> None:
    assert len(BOMB) < 64 * KIB  # small on the wire: only the decoded size trips the cap
    _fails(limits_site, "/bomb", PayloadTooLarge)


def test_no_first_byte_times_out(limits_site: Site) -> None:
    error = _fails(limits_site, "/stall", FetchTimeout)
    assert error.status == 504 and "sent nothing for 0.5s" in error.message


def test_a_trickle_hits_the_total_time_limit(limits_site: Site) -> None:
    error = _fails(limits_site, "/trickle", FetchTimeout)
    assert "took longer than 1.5s" in error.message


def test_ten_thousand_headers_are_refused(limits_site: Site) -> None:
    error = _fails(limits_site, "/headers", BadGateway)
    assert "malformed" in error.message


def test_redirect_loops_stop_at_the_cap(limits_site: Site) -> None:
    error = _fails(limits_site, "/loop", BadGateway)
    assert "redirected more than 5 times" in error.message
    assert limits_site.hits.count("/loop") == 6


def test_unreadable_types_and_encodings_are_refused(limits_site: Site) -> None:
    error = _fails(limits_site, "/image", UnsupportedMediaType)
    assert error.status == 415 and "image/png" in error.message
    assert "unsupported content encoding: br" in _fails(limits_site, "/brotli", BadGateway).message


def test_a_closed_port_is_a_clear_bad_gateway(site: Site) -> None:
    url = site.url("/")
    site.close()
    with pytest.raises(BadGateway) as caught:
        asyncio.run(make_fetcher(("127.0.0.1",), **LIMITS).fetch(url))
    assert "could not connect to 127.0.0.1" in caught.value.message
