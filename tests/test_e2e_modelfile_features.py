"""Modelfile and server features on the real model (issue 16): every sampler the documentation lists, the KV
cache type and flash attention settings, gpt-oss (harmony) output, and pulls through an HTTPS proxy."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
PROMPT = "Write a short story about a lighthouse keeper."


def _generate(server, options: dict, model: str = MODEL) -> str:
    body = {"model": model, "prompt": PROMPT, "stream": False,
            "options": {"num_predict": 40, "temperature": 1.0, "seed": 11, **options}}
    response = httpx.post(f"{server.url}/api/generate", json=body, timeout=300, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()["response"]


# --- item 4: mirostat ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_changes_sampling_and_is_deterministic_with_a_seed(server, version: int) -> None:
    mirostat = {"mirostat": version, "mirostat_tau": 0.5, "mirostat_eta": 0.1}
    default = _generate(server, {})
    first, again = _generate(server, mirostat), _generate(server, mirostat)
    assert first == again
    assert first != default


def test_mirostat_from_the_modelfile_is_applied(server) -> None:
    created = httpx.post(f"{server.url}/api/create", timeout=300, trust_env=False, json={
        "model": "smol-mirostat", "from": MODEL, "stream": False,
        "parameters": {"mirostat": 2, "mirostat_tau": 0.5, "mirostat_eta": 0.1}})
    assert created.status_code == 200, created.text
    shown = httpx.post(f"{server.url}/api/show", json={"model": "smol-mirostat"}, trust_env=False).json()
    assert "mirostat" in shown["parameters"] and "mirostat_tau" in shown["parameters"]
    assert _generate(server, {}, model="smol-mirostat") == _generate(
        server, {"mirostat": 2, "mirostat_tau": 0.5, "mirostat_eta": 0.1})
    assert _generate(server, {}, model="smol-mirostat") != _generate(server, {})


# --- item 3: OLLAMA_KV_CACHE_TYPE ----------------------------------------------------------------
@pytest.fixture(scope="module")
def q8_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second corral whose KV cache is q8_0 (flash attention left to llama.cpp)."""
    srv = start_server(tmp_path_factory.mktemp("corral-q8"), {"OLLAMA_KV_CACHE_TYPE": "q8_0"})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        yield srv
    finally:
        stop_server(srv.process)


def _loaded_size(srv: Server) -> tuple[int, str]:
    """Load smollm2 afresh with a 1024-token context, generate at temperature 0; its /api/ps size and the text."""
    httpx.post(f"{srv.url}/api/generate", json={"model": MODEL, "keep_alive": 0}, timeout=120, trust_env=False)
    text = _generate(srv, {"num_ctx": 1024, "temperature": 0, "num_predict": 12})
    rows = httpx.get(f"{srv.url}/api/ps", trust_env=False).json()["models"]
    return next(row["size"] for row in rows if row["name"] == MODEL), text


def test_a_q8_0_kv_cache_holds_fewer_bytes_in_ps_and_still_answers(server, q8_server) -> None:
    info = httpx.post(f"{server.url}/api/show", json={"model": MODEL}, trust_env=False).json()["model_info"]
    layers, heads = info["llama.block_count"], info["llama.attention.head_count"]
    kv_width = info["llama.attention.head_count_kv"] * info["llama.embedding_length"] // heads
    cells = 1024 * 4  # num_ctx × OLLAMA_NUM_PARALLEL's default 4 slots
    f16_size, f16_text = _loaded_size(server)
    q8_size, q8_text = _loaded_size(q8_server)
    f16_kv, q8_kv = layers * cells * 2 * kv_width * 2, layers * cells * 2 * kv_width // 32 * 34
    assert f16_size - q8_size == f16_kv - q8_kv
    assert q8_text.strip() and f16_text.strip()
