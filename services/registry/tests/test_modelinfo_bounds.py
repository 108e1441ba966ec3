"""GGUF metadata in the store stays bounded (OLL-15): large values are left in the file, /api/show reads a
bounded part of them, the parse cache is weighed in bytes; and /api/create refuses what llama.cpp would
refuse at load (LCP-2, issue 18 item 8)."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest

from corral_common.errors import BadRequest
from corral_common.gguf import ARRAY, INT32, STRING, UINT32
from corral_common.names import parse_name
from corral_common.schemas import CreateRequest, NamedRequest, ShowRequest
from corral_common.testing.ggufwriter import GGUF, Arr, gstr, runnable_model, u32, u64
from corral_registry import loadcheck, modelinfo, service
from corral_registry.store import ModelStore
from corral_registry.testing import create_events, put_blob

MiB = 1024 * 1024
BOMB = 10_000_000


def _bomb() -> bytes:
    """A model llama.cpp loads, with a ten-million-element int32 array (38 MiB) among its metadata."""
    import numpy as np

    f = runnable_model()
    f.raw_kvs = gstr("general.bomb") + u32(ARRAY) + u32(INT32) + u64(BOMB) + np.arange(BOMB, dtype="<i4").tobytes()
    f.n_kv = len(f.kvs) + 1
    return f.build()


@pytest.fixture(scope="module")
def bomb_bytes() -> bytes:
    return _bomb()


def _stored(store: ModelStore, data: bytes, name: str = "bomb") -> None:
    digest = put_blob(store, data)
    events = create_events(store, model=name, files={"m.gguf": str(digest)}, template="{{ .Prompt }}")
    assert events[-1] == {"status": "success"}


def _show(store: ModelStore, verbose: bool, name: str = "bomb") -> dict[str, Any]:
    return service.show(store, ShowRequest(model=name, verbose=verbose))


def _model_info_peak(store: ModelStore, verbose: bool) -> int:
    """The most memory the metadata part of a show took (the parse is cached by then, as in the service)."""
    gguf = service.ModelView(store, store.get(parse_name("bomb"))).gguf()  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        modelinfo.model_info(gguf, verbose)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_oll15_show_of_a_huge_array_without_verbose_reads_none_of_it(store: ModelStore, bomb_bytes: bytes) -> None:
    _stored(store, bomb_bytes)
    shown = _show(store, verbose=False)
    assert shown["model_info"]["general.bomb"] == [] and "model_info_truncated" not in shown
    assert shown["model_info"]["general.architecture"] == "llama"
    assert _model_info_peak(store, verbose=False) < MiB  # before: a 10M-item list (~400 MiB) in the parse cache


def test_oll15_verbose_show_is_capped_with_a_marker(store: ModelStore, bomb_bytes: bytes) -> None:
    _stored(store, bomb_bytes)
    shown = _show(store, verbose=True)
    assert shown["model_info"]["general.bomb"] == list(range(modelinfo.SHOW_ITEMS))
    assert shown["model_info_truncated"] == {"general.bomb": BOMB}
    assert _model_info_peak(store, verbose=True) < 64 * MiB  # a million numbers at most, never ten
    assert len(shown["model_info"]["tokenizer.ggml.tokens"]) == 261  # what fits is whole


def test_oll15_verbose_show_keeps_a_real_sized_vocabulary_whole(store: ModelStore) -> None:
    tokens = [f"tok{i}" for i in range(50_000)]
    f = runnable_model()
    f.kvs = [kv for kv in f.kvs if not kv[0].startswith("tokenizer.ggml.")]
    f.add("tokenizer.ggml.model", STRING, "gpt2").add("tokenizer.ggml.tokens", ARRAY, Arr(STRING, tokens))
    f.add("tokenizer.ggml.merges", ARRAY, Arr(STRING, [f"t ok{i}" for i in range(40_000)]))
    f.add("tokenizer.ggml.bos_token_id", UINT32, 4097).add("tokenizer.ggml.eos_token_id", UINT32, 49_999)
    digest = put_blob(store, f.build())
    assert create_events(store, model="vocab", files={"m.gguf": str(digest)})[-1] == {"status": "success"}
    shown = _show(store, verbose=True, name="vocab")
    assert shown["model_info"]["tokenizer.ggml.tokens"] == tokens and "model_info_truncated" not in shown
    assert len(shown["model_info"]["tokenizer.ggml.merges"]) == 40_000
    assert _show(store, verbose=False, name="vocab")["model_info"]["tokenizer.ggml.tokens"] == []
    resolved = service.resolve(store, NamedRequest(model="vocab"))
    assert (resolved.bos_token, resolved.eos_token) == ("tok4097", "tok49999")  # read from the file on demand


def test_oll15_parse_cache_is_weighed_in_bytes(store: ModelStore, bomb_bytes: bytes) -> None:
    digest = put_blob(store, bomb_bytes)
    gguf = modelinfo.gguf_of(store.blob_path(digest))
    assert gguf.memory < MiB and modelinfo.gguf_of(store.blob_path(digest)) is gguf
    assert modelinfo._GGUF_CACHE.bytes <= modelinfo.GGUF_CACHE_BYTES


# --- /api/create asks llama.cpp's loader (without the weights) --------------------------------------

class _NoJobs:
    def run(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a model llama.cpp refuses must not be queued")


def _create(store: ModelStore, data: bytes) -> None:
    req = CreateRequest(model="refused", files={"m.gguf": str(put_blob(store, data))})

    async def drain() -> None:
        async for _ in service.create(store, _NoJobs(), req):  # type: ignore[arg-type]
            pass

    asyncio.run(drain())


needs_llama = pytest.mark.skipif(not loadcheck.available(), reason="llama-cpp-python is not installed")


@needs_llama
@pytest.mark.parametrize("model, reason", [
    (runnable_model().setting("general.architecture", STRING, "corralnope"), "unknown model architecture: 'corralnope'"),
    (runnable_model().setting("tokenizer.ggml.model", STRING, "nonesuch"), "unknown tokenizer: 'nonesuch'"),
    (runnable_model().setting("llama.context_length", STRING, "256"), "key llama.context_length has wrong type str"),
    (runnable_model().setting("llama.embedding_length", UINT32, 32), "tensor 'token_embd.weight' has wrong shape"),
    (runnable_model().without_tensor("blk.0.ffn_down.weight"), "tensor 'blk.0.ffn_down.weight' not found"),
], ids=["unknown architecture", "unknown tokenizer", "hyperparameter of the wrong type", "wrong tensor shape",
        "missing tensor"])
def test_lcp2_create_refuses_what_llama_cpp_would_refuse_at_load(store: ModelStore, model: GGUF,
                                                                 reason: str) -> None:
    with pytest.raises(BadRequest) as info:
        _create(store, model.build())
    assert info.value.status == 400 and info.value.message.startswith("llama.cpp cannot load this model: ")
    assert reason in info.value.message


@needs_llama
def test_lcp2_llama_cpp_check_accepts_a_loadable_model_with_a_huge_array(store: ModelStore,
                                                                              bomb_bytes: bytes) -> None:
    path = store.blob_path(put_blob(store, bomb_bytes))
    loadcheck.check_loadable(path)  # llama.cpp reads all 38 MiB of it (~250 MiB at its peak), in the child
