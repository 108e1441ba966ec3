"""The batch engine's image path on the real smollm2 model, with the projector replaced by a text stand-in.

No vision model can be had on this machine, so ``vision`` is a stand-in that evaluates the prompt's text
(markers removed) into the slot's sequence the way mtmd's helper does: if the engine wires the evaluated
positions, the first-token logits and the slot's KV correctly, the answer equals the text-only answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_common.errors import BadRequest
from corral_inference.engine import LoadSpec
from corral_inference.testing import Outcome, run
from corral_inference.vision import MARKER


internals = pytest.importorskip("llama_cpp._internals")
BatchEngine = pytest.importorskip("corral_inference.batch_engine").BatchEngine
PROMPT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"


class TextAsImage:
    """Evaluates the prompt's text into seq_id from position 0 with logits on the last token, as mtmd would."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine, self.calls = engine, []

    def evaluate(self, llama_ctx, prompt: str, images: list[bytes], n_batch: int, seq_id: int = 0) -> int:
        self.calls.append((seq_id, images))
        tokens = self.engine.model.tokenize(MARKER.sub("", prompt).encode(), add_bos=True, special=True)
        batch = internals.LlamaBatch(n_tokens=len(tokens), embd=0, n_seq_max=1)
        try:
            for pos, token in enumerate(tokens):
                b = batch.batch
                b.token[pos], b.pos[pos], b.n_seq_id[pos], b.logits[pos] = token, pos, 1, pos == len(tokens) - 1
                b.seq_id[pos][0] = seq_id
                b.n_tokens += 1
            self.engine.ctx.decode(batch)
        finally:
            batch.close()
        return len(tokens)

    def close(self) -> None:
        pass


def _run(engine: BatchEngine, prompt: str, images: tuple[bytes, ...] = ()) -> Outcome:
    return run(engine, prompt, images=images, temperature=0, num_predict=16)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path):
    engine = BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=512, num_thread=2), 2)
    engine.vision = TextAsImage(engine)
    yield engine
    engine.close()


def test_an_image_prompt_generates_from_the_positions_the_projector_filled(engine: BatchEngine) -> None:
    plain = _run(engine, PROMPT)
    seen = _run(engine, "[img-0]" + PROMPT, (b"\x89PNG fake",))
    assert seen.text == plain.text and plain.text.strip()
    assert engine.vision.calls[-1][1] == [b"\x89PNG fake"]
    final = seen.final
    assert final.prompt_eval_count == plain.final.prompt_eval_count and final.eval_count == plain.final.eval_count
    assert final.context == []  # image positions cannot be replayed as tokens


def test_a_text_prompt_after_an_image_prompt_reuses_nothing_from_the_image_slot(engine: BatchEngine) -> None:
    _run(engine, "[img-0]" + PROMPT, (b"img",))
    first = _run(engine, PROMPT)
    again = _run(engine, PROMPT)
    assert first.text == again.text and first.final.prompt_eval_count >= 1


def test_images_on_a_model_without_a_projector_fail_that_request_only(engine: BatchEngine) -> None:
    vision, engine.vision = engine.vision, None
    try:
        failed = _run(engine, "[img-0]" + PROMPT, (b"img",))
    finally:
        engine.vision = vision
    assert isinstance(failed.error, BadRequest) and "no vision projector" in failed.error.message
    ok = _run(engine, PROMPT)
    assert ok.text.strip() and ok.final.done
