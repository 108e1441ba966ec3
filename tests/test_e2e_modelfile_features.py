"""Modelfile and server features on the real model (issue 16): every sampler the documentation lists, the KV
cache type and flash attention settings, gpt-oss (harmony) output, and pulls through an HTTPS proxy."""

from __future__ import annotations

import httpx
import pytest

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
