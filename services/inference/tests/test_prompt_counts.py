"""The cached part of a prompt, through the inference API with the fake engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from corral_common.testing.ggufwriter import small_model
from corral_inference.main import create_app
from corral_inference.settings import InferenceSettings
from corral_inference.testing import FakeEngine


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


def test_a_repeated_prompt_reports_what_it_took_from_the_cache(api) -> None:
    client, model = api
    first = _final(client, model, "hello there")
    again = _final(client, model, "hello there")
    assert first["prompt_eval_count"] == 11 and "cached_tokens" not in first
    assert again["prompt_eval_count"] == 1 and again["cached_tokens"] == 10

