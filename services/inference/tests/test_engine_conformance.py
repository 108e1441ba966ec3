"""One contract for every Engine: the same checks run on FakeEngine and on the real BatchEngine (smollm2 135M).

Both engines drive the shared Generation, so what the fake shows the unit tests is what the server does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from corral_common.errors import BadRequest

from corral_inference.engine import Engine, LoadSpec
from corral_inference.testing import FakeEngine, Outcome, run


SCRIPT = "Red, green and blue are three colours of the rainbow."
CHAT = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"temperature": 0, "num_predict": 24}


@dataclass
class Subject:
    engine: Engine
    prompt: str

    def run(self, **options) -> Outcome:
        return run(self.engine, self.prompt, **{**GREEDY, **options})


@pytest.fixture(scope="module", params=["fake", "batch"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "fake":
        engine: Engine = FakeEngine(LoadSpec(model_path="fake", num_ctx=512), script=SCRIPT)
        prompt = "Name three colours."
    else:
        path = request.getfixturevalue("smollm2_path")
        batch_engine = pytest.importorskip("corral_inference.batch_engine")
        engine, prompt = batch_engine.BatchEngine(LoadSpec(model_path=str(path), num_ctx=512, num_thread=2), 2), CHAT
    yield Subject(engine, prompt)
    engine.close()


def test_a_completion_streams_pieces_then_one_final_event_with_the_metrics(subject: Subject) -> None:
    outcome = subject.run()
    *pieces, final = outcome.events
    assert pieces and all(p.content and not p.done for p in pieces)
    assert final.done and final.done_reason in ("stop", "length") and not final.content
    assert final.eval_count >= len(pieces) and final.prompt_eval_count >= 1
    assert final.prompt_eval_duration > 0 and final.eval_duration >= 0
    assert len(final.context) >= final.prompt_eval_count + final.eval_count


def test_a_repeated_prompt_evaluates_only_its_last_token(subject: Subject) -> None:
    subject.run(num_predict=2)
    assert subject.run(num_predict=2).final.prompt_eval_count == 1


def test_cancel_ends_with_done_reason_cancel(subject: Subject) -> None:
    outcome = subject.run(num_predict=64, cancel_after=1)
    assert outcome.final.done_reason == "cancel" and len(outcome.events) == 2


def test_num_predict_ends_with_length(subject: Subject) -> None:
    final = subject.run(num_predict=3).final
    assert final.done_reason == "length" and final.eval_count == 3


def test_a_stop_string_ends_with_stop_and_is_never_emitted(subject: Subject) -> None:
    reference = subject.run().text
    middle = len(reference) // 2
    stop = reference[middle:middle + 4]
    outcome = subject.run(stop=(stop,))
    assert outcome.final.done_reason == "stop"
    assert outcome.text == reference[:reference.find(stop)] and stop not in outcome.text


def test_logprobs_come_with_every_piece(subject: Subject) -> None:
    outcome = subject.run(num_predict=3, logprobs=True, top_logprobs=2)
    pieces = outcome.events[:-1]
    assert len(pieces) == 3
    for piece in pieces:
        (item,) = piece.logprobs
        assert {"token", "logprob", "bytes"} <= set(item) and len(item["top_logprobs"]) == 2


def test_a_prompt_over_the_context_without_truncate_is_a_400_and_nothing_else(subject: Subject) -> None:
    outcome = run(subject.engine, "hello " * 600, truncate=False)
    assert isinstance(outcome.error, BadRequest) and outcome.events == []


def test_tokenize_counts_more_tokens_for_a_longer_prompt(subject: Subject) -> None:
    short = subject.engine.tokenize("Hello")
    assert short and all(isinstance(t, int) for t in short)
    assert len(subject.engine.tokenize("Hello there, how are you today?")) > len(short)
