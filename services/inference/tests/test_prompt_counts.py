"""Token-id embedding inputs and the cached part of a prompt, through the inference API with the fake engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corral_common.testing.ggufwriter import small_model
from corral_inference.engine import LoadSpec, UnknownToken
from corral_inference.main import create_app
from corral_inference.settings import InferenceSettings
from corral_inference.testing import VOCABULARY, FakeEngine


@pytest.fixture
def api(tmp_path: Path):
    settings = InferenceSettings(models_dir=tmp_path)
    data = small_model().build()
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / f"sha256-{digest}").write_bytes(data)
    with TestClient(create_app(settings, factory=lambda spec: FakeEngine(spec, script="fine"))) as client:
        yield client, {"name": "tiny:latest", "model_digest": digest}


def _final(client: TestClient, model: dict, prompt: str) -> dict:
    with client.stream("POST", "/run/completion", json={"model": model, "prompt": prompt}) as response:
        return [json.loads(line) for line in response.iter_lines() if line][-1]


def test_token_inputs_embed_as_the_text_they_spell(api) -> None:
    client, model = api
    by_text = client.post("/run/embed", json={"model": model, "inputs": ["abc", "de"]}).json()
    by_ids = client.post("/run/embed", json={"model": model, "tokens": [[97, 98, 99], [100, 101]]}).json()
    assert by_ids["embeddings"] == by_text["embeddings"] and by_ids["prompt_eval_count"] == 5


def test_an_id_outside_the_vocabulary_is_a_400_naming_it(api) -> None:
    client, model = api
    response = client.post("/run/embed", json={"model": model, "tokens": [[97], [98, VOCABULARY + 7]]})
    assert response.status_code == 400 and str(VOCABULARY + 7) in response.json()["error"]


def test_a_repeated_prompt_reports_what_it_took_from_the_cache(api) -> None:
    client, model = api
    first = _final(client, model, "hello there")
    again = _final(client, model, "hello there")
    assert first["prompt_eval_count"] == 11 and "cached_tokens" not in first
    assert again["prompt_eval_count"] == 1 and again["cached_tokens"] == 10


def test_unknown_token_names_the_id_and_the_range() -> None:
    engine = FakeEngine(LoadSpec(model_path="fake"))
    try:
        assert engine.detokenize([104, 105]) == "hi"
        with pytest.raises(UnknownToken, match=r"token id -1 .*0 to"):
            engine.detokenize([104, -1])
    finally:
        engine.close()
