"""The completion loop and stop-string handling, on a fake engine."""

from __future__ import annotations

import threading

from corral_inference.completion import CompletionJob, fit_context, run_completion
from corral_inference.engine import LoadSpec, Sampling
from corral_inference.textstream import TextStream

from fakes import FakeEngine


def _run(script: str, **sampling) -> tuple[str, dict]:
    engine = FakeEngine(LoadSpec(model_path="x", num_ctx=256), script=script)
    events: list[dict] = []
    run_completion(engine, CompletionJob("hi", [], Sampling(**sampling), threading.Event()), events.append)
    return "".join(e.get("content", "") for e in events), events[-1]


def test_generates_until_the_end_token() -> None:
    text, final = _run("Hello there")
    assert text == "Hello there"
    assert final["done_reason"] == "stop" and final["eval_count"] == len("Hello there")
    assert final["prompt_eval_count"] == 2
    assert final["context"][:2] == [ord("h"), ord("i")]


def test_num_predict_stops_with_length() -> None:
    text, final = _run("Hello there", num_predict=4)
    assert text == "Hell" and final["done_reason"] == "length" and final["eval_count"] == 4


def test_stop_string_is_cut_and_never_emitted() -> None:
    text, final = _run("one, two, three", stop=(", t",))
    assert text == "one" and final["done_reason"] == "stop"


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    text, _ = _run("a<|x b", stop=("<|im_end|>",))
    assert text == "a<|x b"


def test_cancel_stops_generation() -> None:
    engine = FakeEngine(LoadSpec(model_path="x"), script="abcdef")
    cancel = threading.Event()
    events: list[dict] = []

    def emit(event: dict) -> None:
        events.append(event)
        cancel.set()

    run_completion(engine, CompletionJob("p", [], Sampling(), cancel), emit)
    assert events[-1]["done_reason"] == "cancel"
    assert sum(1 for e in events if "content" in e) == 1


def test_text_stream_keeps_utf8_whole() -> None:
    stream = TextStream(())
    euro = "€".encode()
    assert stream.push(euro[:1]) == ("", False)
    assert stream.push(euro[1:]) == ("€", False)


def test_fit_context_keeps_head_and_recent_tokens() -> None:
    tokens = list(range(100))
    fitted = fit_context(tokens, n_ctx=21, num_keep=4)
    assert len(fitted) == 20 and fitted[:4] == [0, 1, 2, 3] and fitted[-1] == 99
