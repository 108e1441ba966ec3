"""The vision path in the inference service: projector path, mtmd prompt markers, evaluation behind a fake seam."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import BadRequest
from corral_common.internal import LoadRequest
from corral_common.testing.ggufwriter import small_model
from corral_inference.main import create_app
from corral_inference.service import load_spec
from corral_inference.settings import InferenceSettings
from corral_inference.testing import FakeEngine
from corral_inference.vision import VisionContext, mtmd_prompt

MEDIA = "<__media__>"


def _blob(root: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / f"sha256-{digest}").write_bytes(data)
    return digest


def test_markers_become_the_mtmd_marker_and_images_follow_their_order() -> None:
    text, images = mtmd_prompt("[img-1] and [img-0] compared", [b"zero", b"one"], MEDIA)
    assert text == f"{MEDIA} and {MEDIA} compared" and images == [b"one", b"zero"]
    with pytest.raises(BadRequest, match=r"names \[img-2\] but the request has 1 image"):
        mtmd_prompt("[img-2]", [b"x"], MEDIA)
    with pytest.raises(BadRequest, match=r"image 1 has no \[img-1\] marker"):
        mtmd_prompt("[img-0]", [b"x", b"y"], MEDIA)


class FakeMtmd:
    """Records the calls the vision path makes; each image "costs" 10 positions, text one per character."""

    def __init__(self, vision: bool = True, bad_image: bytes = b"") -> None:
        self.vision, self.bad_image = vision, bad_image
        self.calls: list[tuple[str, Any]] = []

    def init(self, projector: str, model: Any, n_threads: int) -> Any:
        self.calls.append(("init", projector))
        return {"projector": projector}

    def supports_vision(self, ctx: Any) -> bool:
        return self.vision

    def marker(self) -> str:
        return MEDIA

    def bitmap(self, ctx: Any, data: bytes) -> Any:
        return None if data == self.bad_image else ("bitmap", data)

    def tokenize(self, ctx: Any, text: str, bitmaps: list[Any]) -> Any:
        self.calls.append(("tokenize", (text, [b[1] for b in bitmaps])))
        return {"text": text, "images": len(bitmaps)}

    def eval_chunks(self, ctx: Any, llama_ctx: Any, chunks: Any, n_past: int, seq_id: int, n_batch: int) -> int:
        self.calls.append(("eval", (llama_ctx, n_past, n_batch)))
        return n_past + len(chunks["text"].replace(MEDIA, "")) + 10 * chunks["images"]

    def free_bitmap(self, bitmap: Any) -> None:
        self.calls.append(("free_bitmap", bitmap[1]))

    def free_chunks(self, chunks: Any) -> None:
        self.calls.append(("free_chunks", None))

    def free(self, ctx: Any) -> None:
        self.calls.append(("free", ctx["projector"]))


def test_a_prompt_with_images_is_tokenized_and_evaluated_then_freed() -> None:
    backend = FakeMtmd()
    vision = VisionContext.load(backend, "/p/mmproj", model="model-pointer", n_threads=2)
    used = vision.evaluate("lctx", "look [img-0]!", [b"png-bytes"], n_batch=64)
    assert used == len("look !") + 10
    assert ("tokenize", (f"look {MEDIA}!", [b"png-bytes"])) in backend.calls
    assert ("eval", ("lctx", 0, 64)) in backend.calls
    assert [c for c in backend.calls if c[0].startswith("free")] == [("free_chunks", None),
                                                                      ("free_bitmap", b"png-bytes")]
    vision.close()
    assert backend.calls[-1] == ("free", "/p/mmproj")


def test_undecodable_images_and_non_vision_projectors_are_400s() -> None:
    backend = FakeMtmd(bad_image=b"bad")
    vision = VisionContext.load(backend, "/p", model=None, n_threads=1)
    with pytest.raises(BadRequest, match="image 1 could not be decoded"):
        vision.evaluate("lctx", "[img-0][img-1]", [b"ok", b"bad"], n_batch=8)
    assert ("free_bitmap", b"ok") in backend.calls and not any(c[0] == "tokenize" for c in backend.calls)
    with pytest.raises(BadRequest, match="does not support images"):
        VisionContext.load(FakeMtmd(vision=False), "/p", model=None, n_threads=1)


def test_the_projector_path_reaches_the_load_spec(tmp_path: Path) -> None:
    model, projector = _blob(tmp_path, small_model().build()), "c" * 64
    req = LoadRequest.model_validate({"model": {"name": "v:latest", "model_digest": model,
                                                "projectors": [projector]}})
    spec = load_spec(InferenceSettings(models_dir=tmp_path), req)
    assert spec.projector == str(tmp_path / "blobs" / f"sha256-{projector}")
    plain = LoadRequest.model_validate({"model": {"name": "t:latest", "model_digest": model}})
    assert load_spec(InferenceSettings(models_dir=tmp_path), plain).projector == ""


def test_images_for_a_model_without_a_projector_are_a_400(tmp_path: Path) -> None:
    settings = InferenceSettings(models_dir=tmp_path)
    model = _blob(tmp_path, small_model().build())
    with TestClient(create_app(settings, factory=lambda spec: FakeEngine(spec, script="fine"))) as client:
        plain = client.post("/run/completion", json={"model": {"name": "t", "model_digest": model},
                                                     "prompt": "[img-0]", "images": ["aGk="]})
    assert plain.status_code == 400 and "no vision projector" in plain.text
