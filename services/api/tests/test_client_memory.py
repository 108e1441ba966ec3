"""Internal answers leave the gateway's memory with the request (OLL-15: a verbose /api/show of a GGUF with a
huge array is megabytes; each one kept until a full garbage collection grew the gateway without bound)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import httpx

from corral_common.shutdown import Shutdown

from corral_api.clients import RegistryClient


def test_oll15_an_answer_is_freed_by_reference_counting_not_left_for_the_gc() -> None:
    body = b'{"model_info": {"general.bomb": [' + b"0," * 1_000_000 + b'0]}, "modified_at": "x"}'
    client = RegistryClient("http://registry", Shutdown())
    client.http.client = httpx.AsyncClient(base_url="http://registry",
                                           transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body)))
    seen: list[weakref.ref] = []

    async def call() -> None:
        response = await client.http.call("POST", "/store/show", "rid", b"{}")
        seen.append(weakref.ref(response))
        assert len(response.json()["model_info"]["general.bomb"]) == 1_000_001

    gc.disable()
    try:
        asyncio.run(call())
        assert seen[0]() is None, "the response (and its megabytes) waits for the cyclic garbage collector"
    finally:
        gc.enable()
