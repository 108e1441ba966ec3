"""The vision path in the inference service: projector path, mtmd prompt markers, encoding and decoding behind a
fake seam, and the encoder thread."""

from __future__ import annotations

import hashlib
import queue
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import BadRequest, InternalError
from corral_common.internal import LoadRequest
from corral_common.testing.ggufwriter import small_model
from corral_inference.engine import CompletionJob, Sampling
from corral_inference.main import create_app
from corral_inference.service import load_spec
from corral_inference.settings import InferenceSettings
from corral_inference.testing import FakeEngine
from corral_inference.vision import NULL_TOKEN, ImageEncoder, VisionContext, mtmd_prompt

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
    """Records the calls the vision path makes; text is one token per character, each image 10 positions."""

    def __init__(self, vision: bool = True, bad_image: bytes = b"", wrapper: list[int] | None = None) -> None:
        self.vision, self.bad_image, self.wrapper = vision, bad_image, wrapper or []
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
        return {"text": text, "images": [b[1] for b in bitmaps]}

    def chunks(self, chunks: Any) -> list[Any]:
        texts = chunks["text"].split(MEDIA)
        out: list[Any] = [[ord(c) for c in texts[0]]]
        for image, text in zip(chunks["images"], texts[1:]):
            out += [("image", image), self.wrapper + [ord(c) for c in text]]
        return out

    def encode(self, ctx: Any, chunk: Any) -> Any:
        self.calls.append(("encode", chunk[1]))
        return ("embeddings", chunk[1])

    def image_positions(self, chunk: Any) -> int:
        return 10

    def decode_text(self, llama_ctx: Any, tokens: list[int], n_past: int, seq_id: int, n_batch: int,
                    logits_last: bool) -> int:
        self.calls.append(("decode_text", ("".join(map(chr, tokens)), n_past, seq_id, logits_last)))
        return n_past + len(tokens)

    def decode_image(self, ctx: Any, llama_ctx: Any, chunk: Any, embeddings: Any, n_past: int, seq_id: int,
                     n_batch: int) -> int:
        self.calls.append(("decode_image", (embeddings, n_past, seq_id)))
        return n_past + 10

    def free_bitmap(self, bitmap: Any) -> None:
        self.calls.append(("free_bitmap", bitmap[1]))

    def free_chunks(self, chunks: Any) -> None:
        self.calls.append(("free_chunks", None))

    def free(self, ctx: Any) -> None:
        self.calls.append(("free", ctx["projector"]))


def _names(backend: FakeMtmd) -> list[str]:
    return [name for name, _ in backend.calls]


def test_images_are_encoded_with_the_prompt_then_decoded_in_order_and_freed() -> None:
    backend = FakeMtmd()
    vision = VisionContext.load(backend, "/p/mmproj", model="model-pointer", n_threads=2)
    encoded = vision.encode("look [img-0]!", [b"png-bytes"])
    assert encoded.positions == len("look !") + 10
    assert ("tokenize", (f"look {MEDIA}!", [b"png-bytes"])) in backend.calls
    assert _names(backend)[1:] == ["tokenize", "free_bitmap", "encode"]  # bitmaps go once tokenized
    assert vision.decode("lctx", encoded, n_batch=64, seq_id=1) == encoded.positions
    assert backend.calls[-3:] == [("decode_text", ("look ", 0, 1, False)),
                                  ("decode_image", (("embeddings", b"png-bytes"), 5, 1)),
                                  ("decode_text", ("!", 15, 1, True))]  # logits on the prompt's last token
    encoded.close()
    encoded.close()
    assert _names(backend).count("free_chunks") == 1
    vision.close()
    assert backend.calls[-1] == ("free", "/p/mmproj")


def test_wrapper_tokens_the_vocabulary_lacks_are_left_out() -> None:
    backend = FakeMtmd(wrapper=[NULL_TOKEN, ord("w"), NULL_TOKEN])
    vision = VisionContext.load(backend, "/p", model=None, n_threads=1)
    encoded = vision.encode("a[img-0]b", [b"img"])
    assert encoded.parts[0] == [ord("a")] and encoded.parts[2] == [ord("w"), ord("b")]
    assert encoded.positions == 1 + 10 + 2 == vision.decode("lctx", encoded, n_batch=8)


def test_a_prompt_that_ends_with_an_image_is_a_400() -> None:
    vision = VisionContext.load(FakeMtmd(), "/p", model=None, n_threads=1)
    with pytest.raises(BadRequest, match="needs text after its last image"):
        vision.decode("lctx", vision.encode("see [img-0]", [b"img"]), n_batch=8)


def test_undecodable_images_and_non_vision_projectors_are_400s() -> None:
    backend = FakeMtmd(bad_image=b"bad")
    vision = VisionContext.load(backend, "/p", model=None, n_threads=1)
    with pytest.raises(BadRequest, match="image 1 could not be decoded"):
        vision.encode("[img-0][img-1]", [b"ok", b"bad"])
    assert ("free_bitmap", b"ok") in backend.calls and "tokenize" not in _names(backend)
    with pytest.raises(BadRequest, match="does not support images"):
        VisionContext.load(FakeMtmd(vision=False), "/p", model=None, n_threads=1)


def _job(prompt: str = "[img-0]") -> CompletionJob:
    return CompletionJob(prompt, [], Sampling(), images=(b"img",))


def test_the_encoder_hands_back_results_and_errors_and_skips_cancelled_requests() -> None:
    results: queue.Queue = queue.Queue()

    def encode(job: CompletionJob) -> Any:
        if job.prompt == "bad":
            raise BadRequest("image 0 could not be decoded")
        if job.prompt == "crash":
            raise RuntimeError("boom")
        return f"encoded {job.prompt}"

    encoder = ImageEncoder(encode, lambda job, emit, result: results.put((job.prompt, result)))
    cancelled = _job("gone")
    cancelled.cancel.set()
    for job in (cancelled, _job("ok"), _job("bad"), _job("crash")):
        encoder.submit(job, lambda event: None)
    got = [results.get(timeout=10) for _ in range(3)]
    encoder.close()
    assert got[0] == ("ok", "encoded ok") and results.empty()
    assert isinstance(got[1][1], BadRequest) and got[1][1].message == "image 0 could not be decoded"
    assert isinstance(got[2][1], InternalError) and "boom" in got[2][1].message


def test_requests_queued_at_close_are_handed_back_unloaded() -> None:
    results: queue.Queue = queue.Queue()
    started, release = threading.Event(), threading.Event()

    def encode(job: CompletionJob) -> Any:
        started.set()
        release.wait(10)
        return "encoded"

    encoder = ImageEncoder(encode, lambda job, emit, result: results.put((job.prompt, result)))
    encoder.submit(_job("first"), lambda event: None)
    assert started.wait(10)
    encoder.submit(_job("second"), lambda event: None)
    assert encoder.pending() == 2
    closing = threading.Thread(target=encoder.close)
    closing.start()
    release.set()
    closing.join(10)
    assert results.get(timeout=1) == ("first", "encoded")
    prompt, error = results.get(timeout=1)
    assert prompt == "second" and isinstance(error, InternalError) and error.message == "model unloaded"


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
