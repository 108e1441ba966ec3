"""A long prompt coming in shares each step with the streams already generating (smollm2 135M, real llama.cpp).

The step loop fills a batch with one token per generating slot first and the incoming prompt's chunk after it,
so a stream keeps getting a token every step while a long prompt is evaluated over many steps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral_common.errors import AppError
from corral_common.testing.waiting import wait_for

from corral_inference.engine import CompletionEvent, CompletionJob, LoadSpec, Sampling

batch_engine = pytest.importorskip("corral_inference.batch_engine")
COUNT = "<|im_start|>user\nCount from 1 to 500, separated by commas.<|im_end|>\n<|im_start|>assistant\n"
LONG = ("<|im_start|>user\n" + " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(90))
        + "\nHow many lines were there?<|im_end|>\n<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[batch_engine.BatchEngine]:
    # num_batch 64: the long prompt (~1,300 tokens) takes about twenty steps.
    spec = LoadSpec(model_path=str(smollm2_path), num_ctx=2048, num_thread=2, num_batch=64)
    engine = batch_engine.BatchEngine(spec, 2)
    yield engine
    engine.close()


class _Log:
    """Every event of every request, in the order the loop emitted them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []
        self.ended: dict[str, threading.Event] = {}

    def submit(self, engine: batch_engine.BatchEngine, name: str, prompt: str, num_predict: int) -> CompletionJob:
        job = CompletionJob(prompt, [], Sampling(temperature=0, num_predict=num_predict))
        self.ended[name] = threading.Event()

        def emit(event: CompletionEvent | AppError) -> None:
            done = isinstance(event, AppError) or event.done
            self.events.append((name, done))
            if done:
                self.ended[name].set()

        engine.submit(job, emit)
        return job

    def count(self, name: str) -> int:
        return sum(1 for who, _ in self.events if who == name)


def test_a_stream_gets_a_token_every_step_while_a_long_prompt_is_evaluated(engine) -> None:
    log = _Log()
    # The long prompt must land in the lower slot (the one the loop visited first): hold slot 0 with a request
    # that is cancelled once the stream has slot 1.
    holder = log.submit(engine, "holder", COUNT, 400)
    stream = log.submit(engine, "stream", COUNT.replace("500", "600"), 400)
    assert wait_for(lambda: log.count("stream") >= 1, timeout=120), "the stream never started"
    holder.cancel.set()
    assert log.ended["holder"].wait(60)
    steps = -(-len(engine.tokenize(LONG)) // 64)
    log.submit(engine, "long", LONG, 1)
    assert log.ended["long"].wait(300)
    stream.cancel.set()
    assert log.ended["stream"].wait(60)
    submitted = next(i for i, (who, done) in enumerate(log.events) if who == "holder" and done) + 1
    first_long = next(i for i, (who, _) in enumerate(log.events) if who == "long")
    during = sum(1 for who, _ in log.events[submitted:first_long] if who == "stream")
    # About one token per step of the prompt (a piece may carry more than one token, e.g. "1" and ","); a
    # loop that let the prompt's chunks take the whole batch gave the stream one token in all those steps.
    assert during >= steps // 2, f"{during} stream pieces during the {steps} steps of the long prompt"

