"""OLLAMA_KV_CACHE_TYPE and OLLAMA_FLASH_ATTENTION: read, checked at load with an error that says what to do,
handed to llama.cpp, and counted in the runner's size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corral_common.gguf import UINT32
from corral_common.testing.ggufwriter import small_model
from corral_inference import kvcache
from corral_inference.engine import CompletionJob, LoadSpec, Sampling
from corral_inference.main import create_app
from corral_inference.settings import InferenceSettings
from corral_inference.testing import FakeEngine


def _blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return digest


def _load(tmp_path: Path, data: bytes | None = None, **settings) -> tuple[int, dict]:
    FakeEngine.loads.clear()
    app = create_app(InferenceSettings(models_dir=tmp_path, **settings), factory=lambda spec: FakeEngine(spec))
    with TestClient(app) as client:
        digest = _blob(tmp_path, data or small_model().build())
        answer = client.post("/run/load", json={"model": {"name": "tiny:latest", "model_digest": digest}})
        return answer.status_code, answer.json()


def test_the_variables_are_read() -> None:
    settings = InferenceSettings.from_env({"OLLAMA_KV_CACHE_TYPE": " Q8_0 ", "OLLAMA_FLASH_ATTENTION": "false"})
    assert settings.kv_cache_type == "q8_0" and settings.flash_attention is False
    assert InferenceSettings.from_env({"OLLAMA_FLASH_ATTENTION": "1"}).flash_attention is True
    unset = InferenceSettings.from_env({})
    assert unset.kv_cache_type == "f16" and unset.flash_attention is None


def test_a_quantized_cache_with_flash_attention_off_is_refused_saying_why(tmp_path: Path) -> None:
    status, body = _load(tmp_path, kv_cache_type="q8_0", flash_attention=False)
    assert status == 500
    assert "OLLAMA_KV_CACHE_TYPE=q8_0 needs flash attention" in body["error"]
    assert "OLLAMA_FLASH_ATTENTION=1" in body["error"] and FakeEngine.loads == []


def test_an_unknown_type_names_the_choices(tmp_path: Path) -> None:
    status, body = _load(tmp_path, kv_cache_type="q5_1")
    assert status == 500 and body["error"] == ('OLLAMA_KV_CACHE_TYPE "q5_1" is not a KV cache type: '
                                               'set it to f16, q8_0 or q4_0')


@pytest.mark.parametrize("kind, flash, expected_flash", [("q8_0", None, None), ("q4_0", True, True),
                                                         ("f16", False, False)])
def test_the_runner_is_loaded_with_the_type_and_estimated_in_it(tmp_path: Path, kind: str, flash: bool | None,
                                                                 expected_flash: bool | None) -> None:
    status, _ = _load(tmp_path, kv_cache_type=kind, flash_attention=flash, num_parallel=2)
    spec = FakeEngine.loads[0]
    assert status == 200 and spec.kv_cache_type == kind and spec.flash_attention is expected_flash
    kv = kvcache.KvShape(layers=1, kv_heads=1, head_k=64, head_v=64).bytes(kvcache.KV_TYPES[kind], 2048 * 2)
    assert spec.estimate_bytes == len(small_model().build()) + kv


def test_a_model_whose_heads_do_not_split_into_blocks_keeps_f16(tmp_path: Path) -> None:
    odd = small_model().add("llama.attention.head_count", UINT32, 3).build()  # heads of 21 values
    status, _ = _load(tmp_path, odd, kv_cache_type="q8_0")
    assert status == 200 and FakeEngine.loads[0].kv_cache_type == "f16"


def test_flash_attention_follows_the_setting_and_a_quantized_cache() -> None:
    q8, f16 = kvcache.KV_TYPES["q8_0"], kvcache.F16
    assert kvcache.flash_attn_type(f16, None) == kvcache.FLASH_ATTN_AUTO
    assert kvcache.flash_attn_type(q8, None) == kvcache.FLASH_ATTN_ENABLED
    assert kvcache.flash_attn_type(f16, False) == kvcache.FLASH_ATTN_DISABLED
    assert kvcache.flash_attn_type(f16, True) == kvcache.FLASH_ATTN_ENABLED


def _state_bytes(engine, seq_id: int) -> int:
    import llama_cpp

    return llama_cpp.llama_state_seq_get_size(engine.ctx.ctx, seq_id)


def _run(engine, prompt: str) -> str:
    import queue

    events: queue.Queue = queue.Queue()
    engine.submit(CompletionJob(prompt, [], Sampling(temperature=0, num_predict=8)), events.put)
    text = ""
    while True:
        event = events.get(timeout=120)
        assert not isinstance(event, Exception), event
        text += event.content
        if event.done:
            return text


@pytest.mark.parametrize("kind", ["q8_0", "q4_0"])
def test_llama_cpp_holds_the_cache_in_the_type(smollm2_path: Path, kind: str) -> None:
    from corral_inference.batch_engine import BatchEngine

    engines = {t: BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=256, num_thread=2, kv_cache_type=t), 1)
               for t in ("f16", kind)}
    try:
        sizes, held = {}, {}
        for name, engine in engines.items():
            assert _run(engine, "The capital of France is")  # generates with the cache in that type
            sizes[name], held[name] = engine.kv_bytes(), _state_bytes(engine, 0)
        block = kvcache.KV_TYPES[kind]
        assert sizes[kind] * 2 * block.block_elements == sizes["f16"] * block.block_bytes  # bytes per value
        assert held[kind] < held["f16"] * 0.6  # the sequence's cells as llama.cpp stores them
        assert engines[kind].size_bytes() - sizes[kind] == engines["f16"].size_bytes() - sizes["f16"]
    finally:
        for engine in engines.values():
            engine.close()

