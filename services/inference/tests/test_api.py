"""The inference service's internal API driven through create_app with a fake engine."""

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


def _blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return digest


@pytest.fixture
def api(tmp_path: Path):
    settings = InferenceSettings(models_dir=tmp_path)
    with TestClient(create_app(settings, factory=lambda spec: FakeEngine(spec, script="fine"))) as client:
        yield client, tmp_path


def _body(digest: str, **extra) -> dict:
    return {"model": {"name": "tiny:latest", "model_digest": digest}, **extra}


def test_completion_streams_text_then_metrics(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    with client.stream("POST", "/run/completion", json=_body(digest, prompt="hi")) as response:
        assert response.status_code == 200
        events = [json.loads(line) for line in response.iter_lines() if line]
    assert events[:4] == [{"content": "f"}, {"content": "i"}, {"content": "n"}, {"content": "e"}]
    final = events[-1]
    assert final["done"] and final["done_reason"] == "stop" and final["eval_count"] == 4
    assert {"context", "prompt_eval_count", "load_duration", "total_duration"} <= set(final)
    assert "truncated_tokens" not in final and final["context"][:2] == [ord("h"), ord("i")]
    assert final["total_duration"] >= final["eval_duration"]
    rows = client.get("/run/ps").json()["models"]
    assert rows[0]["name"] == "tiny:latest" and rows[0]["context_length"] == 2048  # clamped to trained ctx
    client.post("/run/unload", json={"model_digest": digest})
    assert client.get("/run/ps").json() == {"models": []}


def test_invalid_gguf_is_refused_before_any_engine_loads(api) -> None:
    client, root = api
    FakeEngine.loads.clear()
    digest = _blob(root, b"GGUF\x03\x00\x00\x00garbage")
    response = client.post("/run/completion", json=_body(digest, prompt="hi"))
    assert response.status_code == 400 and "GGUF" in response.json()["error"]
    assert FakeEngine.loads == []


def test_digest_must_be_hex_and_blob_present(api) -> None:
    client, _ = api
    assert client.post("/run/load", json=_body("../../etc/passwd")).status_code == 400
    missing = client.post("/run/load", json=_body("a" * 64))
    assert missing.status_code == 400 and "missing" in missing.json()["error"]


def test_embed_returns_raw_vectors(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    result = client.post("/run/embed", json=_body(digest, inputs=["abc", "de"])).json()
    assert result["embeddings"] == [[3.0, 1.0, 0.0], [2.0, 1.0, 0.0]]
    assert result["prompt_eval_count"] == 5


def test_tokenize_returns_the_prompt_tokens(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    assert client.post("/run/tokenize", json=_body(digest, text="hi!")).json() == {"tokens": [104, 105, 33]}


def _lines(client: TestClient, body: dict) -> list[dict]:
    with client.stream("POST", "/run/completion", json=body) as response:
        assert response.status_code == 200
        return [json.loads(line) for line in response.iter_lines() if line]


def test_an_image_prompt_ends_with_an_empty_context(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    body = _body(digest, prompt="[img-0] what is it?", images=["aGk="])
    body["model"]["projectors"] = ["c" * 64]
    final = _lines(client, body)[-1]
    assert final["done"] and final["context"] == []  # the gateway reads event["context"]


def test_logprob_pieces_and_truncation_on_the_wire(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    events = _lines(client, _body(digest, prompt="x" * 40, logprobs=True, options={"num_ctx": 16}))
    assert set(events[0]) == {"content", "logprobs"} and events[0]["logprobs"][0]["token"] == "f"
    assert events[-1]["truncated_tokens"] == 40 - 15


def test_a_prompt_over_the_context_without_truncate_is_a_400(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    response = client.post("/run/completion", json=_body(digest, prompt="x" * 40, truncate=False,
                                                         options={"num_ctx": 16}))
    assert response.status_code == 400 and response.json() == {"error": "the input length exceeds the context length"}


@pytest.mark.parametrize("bad", [-1, 0x110000, 2**70])
def test_input_validation_an_out_of_vocabulary_context_id_is_a_400_naming_it(api, bad: int) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    response = client.post("/run/completion", json=_body(digest, prompt="hi", context=[104, bad, 105]))
    assert response.status_code == 400 and response.json() == {
        "error": f"context holds token id {bad}, which is not in the model's vocabulary (ids 0 to 1114111)"}


def test_load_answers_its_durations(api) -> None:
    client, root = api
    digest = _blob(root, small_model().build())
    assert set(client.post("/run/load", json=_body(digest)).json()) == {"load_duration", "total_duration"}
