"""The batch engine's image path on the real smollm2 model with a real (synthetic) vision projector.

SmolLM2-135M is the text decoder of SmolVLM-256M, so a projector GGUF with SmolVLM's architecture and seeded random
weights (``corral_common.testing.projector``) drives llama.cpp's whole mtmd path: image decoding and tiling, the
encoder, and the decoder attending to the embeddings. It sees noise, but the same image always gives the same
answer and different images different ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral_common.errors import AppError, BadRequest
from corral_common.internal import CompletionEvent
from corral_common.testing.projector import ProjectorShape, idefics3_projector, png
from corral_inference.engine import CompletionJob, LoadSpec, Sampling
from corral_inference.testing import Outcome, run

BatchEngine = pytest.importorskip("corral_inference.batch_engine").BatchEngine
PROMPT = "<|im_start|>user\n[img-0]Describe this picture.<|im_end|>\n<|im_start|>assistant\n"
TEXT_PROMPT = "<|im_start|>user\nDescribe this picture.<|im_end|>\n<|im_start|>assistant\n"
RED, STRIPES = png(64, 64, (200, 30, 30)), png(96, 64, (20, 30, 230), stripes=8)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    projector = tmp_path_factory.mktemp("vision") / "mmproj.gguf"
    projector.write_bytes(idefics3_projector(seed=7))
    engine = BatchEngine(LoadSpec(model_path=str(smollm2_path), projector=str(projector), num_ctx=1024,
                                  num_thread=2), 2)
    yield engine
    engine.close()


def _run(engine: BatchEngine, prompt: str, images: tuple[bytes, ...] = ()) -> Outcome:
    return run(engine, prompt, images=images, temperature=0, num_predict=12)


def test_two_images_give_different_answers_and_each_the_same_every_time(engine: BatchEngine) -> None:
    red, stripes, red_again = (_run(engine, PROMPT, (image,)) for image in (RED, STRIPES, RED))
    assert red.text.strip() and stripes.text.strip()
    assert red.text == red_again.text and red.text != stripes.text
    assert red.final.eval_count >= 1 and red.final.context == []  # image positions cannot be replayed as tokens


def test_prompt_eval_count_includes_the_image_positions(engine: BatchEngine) -> None:
    text_only = _run(engine, TEXT_PROMPT).final.prompt_eval_count
    with_image = _run(engine, PROMPT, (RED,)).final.prompt_eval_count
    # one tile and the overview, each tokens_per_tile embeddings, besides the text and the wrapper text
    assert with_image >= text_only + 2 * ProjectorShape().tokens_per_tile


def test_a_text_prompt_after_an_image_prompt_reuses_nothing_from_the_image_slot(engine: BatchEngine) -> None:
    _run(engine, PROMPT, (STRIPES,))
    first, again = _run(engine, TEXT_PROMPT), _run(engine, TEXT_PROMPT)
    assert first.text == again.text and first.final.prompt_eval_count >= 1


def test_an_image_that_does_not_decode_fails_that_request_only(engine: BatchEngine) -> None:
    failed = _run(engine, PROMPT, (b"\x89PNG not really",))
    assert isinstance(failed.error, BadRequest) and failed.error.message == "image 0 could not be decoded"
    assert _run(engine, PROMPT, (RED,)).final.done


def test_images_on_a_model_without_a_projector_fail_that_request_only(engine: BatchEngine) -> None:
    saved, (engine.vision, engine.encoder) = (engine.vision, engine.encoder), (None, None)
    try:
        failed = _run(engine, PROMPT, (RED,))
    finally:
        engine.vision, engine.encoder = saved
    assert isinstance(failed.error, BadRequest) and "no vision projector" in failed.error.message
    assert _run(engine, TEXT_PROMPT).final.done


class _Stream:
    """A request's events with the time each arrived."""

    def __init__(self, engine: BatchEngine, prompt: str, images: tuple[bytes, ...], num_predict: int) -> None:
        self.job = CompletionJob(prompt, [], Sampling(temperature=0, num_predict=num_predict), images=images)
        self.pieces: list[float] = []
        self.ended = threading.Event()
        self.error: AppError | None = None
        engine.submit(self.job, self._emit)

    def _emit(self, event: CompletionEvent | AppError) -> None:
        if isinstance(event, AppError):
            self.error = event
        elif not event.done:
            self.pieces.append(time.monotonic())
        if isinstance(event, AppError) or event.done:
            self.ended.set()


def _until(condition: Callable[[], bool], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_a_text_stream_keeps_producing_tokens_while_an_image_is_encoded(engine: BatchEngine) -> None:
    backend: Any = engine.vision.backend
    encoding, release, window = threading.Event(), threading.Event(), []

    def held_encode(ctx: Any, chunk: Any) -> Any:  # the projector's work, held open until the test lets it finish
        window.append(time.monotonic())
        encoding.set()
        release.wait(120)
        return type(backend).encode(backend, ctx, chunk)

    backend.encode = held_encode
    try:
        text = _Stream(engine, "<|im_start|>user\nCount from 1 to 300, separated by commas.<|im_end|>\n"
                               "<|im_start|>assistant\n", (), 900)
        assert _until(lambda: len(text.pieces) >= 1), "the text stream never started"
        image = _Stream(engine, PROMPT, (STRIPES,), 8)
        assert encoding.wait(120), "the image was never encoded"
        before = len(text.pieces)
        _until(lambda: len(text.pieces) >= before + 5 or text.ended.is_set())
        window.append(time.monotonic())
    finally:
        release.set()
        del backend.encode
    assert image.ended.wait(120) and image.error is None and image.pieces
    text.job.cancel.set()
    assert text.ended.wait(120) and text.error is None
    during = [t for t in text.pieces if window[0] < t < window[-1]]
    assert len(during) >= 5, "the text stream stalled while the image was encoded"
    assert image.pieces[0] > window[-1]  # the image request's answer came after its encoding


def test_a_text_stream_keeps_producing_tokens_while_an_image_prompt_is_decoded(engine: BatchEngine) -> None:
    backend: Any = engine.vision.backend
    decoded: list[float] = []

    def timed_decode(*args: Any) -> int:  # each image's embeddings going into the model, one per loop step
        used = type(backend).decode_image(backend, *args)
        decoded.append(time.monotonic())
        return used

    backend.decode_image = timed_decode
    try:
        text = _Stream(engine, "<|im_start|>user\nCount from 1 to 300, separated by commas.<|im_end|>\n"
                               "<|im_start|>assistant\n", (), 900)
        assert _until(lambda: len(text.pieces) >= 1), "the text stream never started"
        image = _Stream(engine, PROMPT, (png(256, 256, (90, 90, 20), stripes=4),), 8)  # 16 tiles + overview
        assert image.ended.wait(300) and image.error is None and image.pieces
    finally:
        del backend.decode_image
        text.job.cancel.set()
    assert text.ended.wait(120) and text.error is None
    assert len(decoded) == 17
    between = [t for t in text.pieces if decoded[0] < t < decoded[-1]]
    assert len(between) >= 5, "the text stream waited for the whole image prompt"
