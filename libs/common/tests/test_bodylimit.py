"""Request-body caps by route (issue 18 item 11; security.md OLL-7: every server-side read has a cap)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Request

from corral_common.bodylimit import DEFAULT_MAX_BODY, RUN_BODY_FACTOR, BodyLimits
from corral_common.http import service_app

CHUNK = 64 << 10


@pytest.mark.parametrize("path, limit", [
    ("/api/show", DEFAULT_MAX_BODY),
    ("/api/pull", DEFAULT_MAX_BODY),
    ("/v2/library/m/manifests/latest", DEFAULT_MAX_BODY),
    ("/api/generate", DEFAULT_MAX_BODY * RUN_BODY_FACTOR),
    ("/api/chat", DEFAULT_MAX_BODY * RUN_BODY_FACTOR),
    ("/api/embed", DEFAULT_MAX_BODY * RUN_BODY_FACTOR),
    ("/v1/chat/completions", DEFAULT_MAX_BODY * RUN_BODY_FACTOR),
    ("/run/completion", DEFAULT_MAX_BODY * RUN_BODY_FACTOR),
    ("/api/generated", DEFAULT_MAX_BODY),
    ("/api/blobs/sha256:" + "a" * 64, None),
    ("/store/blobs/sha256:" + "a" * 64, None),
    ("/v2/library/m/blobs/uploads/", None),
    ("/v2/library/m/blobs/uploads/0f3c", None),
])
def test_each_route_has_its_cap(path: str, limit: int | None) -> None:
    assert BodyLimits().limit(path) == limit


def test_corral_max_body_sets_the_json_cap_and_scales_the_run_routes() -> None:
    limits = BodyLimits.from_env({"CORRAL_MAX_BODY": "1MiB"})
    assert limits.limit("/api/show") == 1 << 20 and limits.limit("/api/chat") == 16 << 20
    assert BodyLimits.from_env({"CORRAL_MAX_BODY": "lots"}).json == DEFAULT_MAX_BODY


class Upload:
    """A chunked body of ``total`` bytes that counts how much of it the server pulled."""

    def __init__(self, total: int) -> None:
        self.total, self.pulled = total, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield b"x" * CHUNK


def _client() -> tuple[httpx.AsyncClient, list[int]]:
    app, seen = service_app("corral test"), []

    @app.post("/api/show")
    @app.post("/api/blobs/{digest}")
    async def read(request: Request) -> dict[str, int]:
        seen.append(len(await request.body()))
        return {"size": seen[-1]}

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test"), seen


def _post(path: str, upload: Upload, headers: dict[str, str] | None = None) -> tuple[httpx.Response, list[int]]:
    async def go() -> tuple[httpx.Response, list[int]]:
        client, seen = _client()
        async with client:
            return await client.post(path, content=upload, headers=headers), seen

    return asyncio.run(go())


def test_oll7_dos_a_declared_length_over_the_cap_is_a_413_before_any_byte_is_read() -> None:
    upload = Upload(200 << 20)
    answer, seen = _post("/api/show", upload, {"Content-Length": str(upload.total)})
    assert answer.status_code == 413 and answer.headers["connection"] == "close"
    assert answer.json() == {"error": f"request body too large: this endpoint takes at most {DEFAULT_MAX_BODY} "
                                      "bytes (CORRAL_MAX_BODY sets the limit for JSON requests)"}
    assert upload.pulled == 0 and seen == []


def test_oll7_dos_a_chunked_body_is_refused_at_the_first_chunk_past_the_cap() -> None:
    upload = Upload(200 << 20)
    answer, seen = _post("/api/show", upload)
    assert answer.status_code == 413 and "at most 4194304 bytes" in answer.json()["error"]
    assert answer.headers["connection"] == "close"  # the rest of the body is never read
    assert upload.pulled <= DEFAULT_MAX_BODY + CHUNK and seen == []


def test_bodies_under_the_cap_and_blobs_of_any_size_pass() -> None:
    answer, _ = _post("/api/show", Upload(1 << 20))
    assert answer.status_code == 200 and answer.json() == {"size": 1 << 20}
    blob = Upload(8 << 20)
    answer, _ = _post("/api/blobs/sha256:" + "a" * 64, blob, {"Content-Length": str(blob.total)})
    assert answer.status_code == 200 and answer.json() == {"size": 8 << 20}
