"""Images on the gateway: validation, Ollama's [img-N] placement, and every API's images reaching inference."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import BadRequest, NotFound

from corral_api.images import decode_image, image_kind, place_markers
from corral_api.main import create_app
from corral_api.settings import ApiSettings

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PNG = base64.b64encode(PNG_BYTES).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 8).decode()
VISION = {"name": "registry.ollama.ai/library/v:latest", "short": "v:latest", "model_digest": "a" * 64,
          "manifest_digest": "b" * 64, "adapters": [], "projectors": ["c" * 64], "details": {},
          "capabilities": ["completion", "vision"], "template": "{{ .Prompt }}", "params": {}, "messages": []}


def test_image_bytes_are_checked() -> None:
    assert decode_image(PNG, 0) == PNG_BYTES and image_kind(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    for encoded, message in [("not base64!", "image 0: invalid base64 data"),
                             (base64.b64encode(b"just some text").decode(), "image 0: not a PNG, JPEG, WebP"),
                             (PNG, "image 0: 24 bytes is larger than the 8 byte limit")]:
        with pytest.raises(BadRequest, match=message):
            decode_image(encoded, 0, limit=8 if encoded == PNG else 1 << 20)


def test_markers_are_numbered_across_the_conversation_and_kept_where_the_text_names_them() -> None:
    messages, images = place_markers([
        {"role": "user", "content": "first", "images": [PNG]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "compare [img-2] with the other", "images": [JPEG, PNG]}])
    assert [m["content"] for m in messages] == ["[img-0] first", "ok", "[img-1] compare [img-2] with the other"]
    assert images == [PNG, JPEG, PNG]
    with pytest.raises(BadRequest, match="image 1: invalid base64"):
        place_markers([{"role": "user", "content": "", "images": [PNG, "%%%"]}])


class FakeStore:
    async def json(self, method: str, path: str, request_id: str, body: Any = None) -> Any:
        if body and body.get("model") != "v":
            raise NotFound(f"model '{body.get('model')}' not found")
        return VISION


class RecordingInference:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def stream(self, path: str, request_id: str, body: Any) -> AsyncIterator[dict[str, Any]]:
        self.bodies.append(body)
        yield {"content": "a cat", "done": False}
        yield {"content": "", "done": True, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 2,
               "context": []}


def client() -> tuple[TestClient, RecordingInference]:
    app = create_app(ApiSettings.from_env({}))
    inference = RecordingInference()
    app.state.store, app.state.inference = FakeStore(), inference
    return TestClient(app, base_url="http://127.0.0.1:11434"), inference


@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"messages": [{"role": "user", "content": "what is it?", "images": [PNG]}], "stream": False}),
    ("/api/generate", {"prompt": "what is it?", "images": [PNG], "stream": False}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]}),
    ("/v1/responses", {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "what is it?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}]}),
])
def test_every_api_sends_the_image_and_its_marker_to_inference(path: str, body: dict[str, Any]) -> None:
    http, inference = client()
    response = http.post(path, json={"model": "v", **body})
    assert response.status_code == 200, response.text
    sent = inference.bodies[0]
    assert sent["images"] == [PNG] and "[img-0] what is it?" in sent["prompt"]
    assert sent["model"]["projectors"] == ["c" * 64]


def test_a_non_image_payload_is_a_400_before_inference() -> None:
    http, inference = client()
    text = base64.b64encode(b"hello there").decode()
    response = http.post("/api/chat", json={"model": "v", "stream": False,
                                            "messages": [{"role": "user", "content": "x", "images": [text]}]})
    assert response.status_code == 400 and "not a PNG" in response.json()["error"] and not inference.bodies
