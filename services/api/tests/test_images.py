"""Images on the gateway: validation, Ollama's [img-N] placement, and every API's images reaching inference."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import BadRequest

from corral_api.images import decode_image, image_kind, place_markers
from corral_api.testing import FakeInference, gateway, model

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PNG = base64.b64encode(PNG_BYTES).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 8).decode()
VISION = model(name="registry.ollama.ai/library/v:latest", short="v:latest", projectors=["c" * 64],
               capabilities=["completion", "vision"])


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


def client() -> tuple[TestClient, FakeInference]:
    inference = FakeInference()
    return gateway(VISION, inference), inference


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
    sent = inference.requests[0]
    assert sent.images == [PNG] and "[img-0] what is it?" in sent.prompt
    assert sent.model.projectors == ["c" * 64]


def test_a_non_image_payload_is_a_400_before_inference() -> None:
    http, inference = client()
    text = base64.b64encode(b"hello there").decode()
    response = http.post("/api/chat", json={"model": "v", "stream": False,
                                            "messages": [{"role": "user", "content": "x", "images": [text]}]})
    assert response.status_code == 400 and "not a PNG" in response.json()["error"] and not inference.requests
