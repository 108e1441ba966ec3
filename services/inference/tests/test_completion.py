"""The shared generation logic (Generation) driven through FakeEngine: limits, stop strings, cancel, metrics."""

from __future__ import annotations

import threading

from corral_common.errors import BadRequest
from corral_common.internal import CompletionEvent

from corral_inference.completion import ContextOverflow, fit_context
from corral_inference.engine import CompletionJob, LoadSpec, Sampling
from corral_inference.testing import IMAGE_POSITIONS, FakeEngine, run
from corral_inference.textstream import TextStream


def _engine(script: str, num_ctx: int = 256) -> FakeEngine:
    return FakeEngine(LoadSpec(model_path="x", num_ctx=num_ctx), script=script)


def test_generates_until_the_end_token() -> None:
    outcome = run(_engine("Hello there"), "hi")
    assert outcome.text == "Hello there"
    final = outcome.final
    assert final.done_reason == "stop" and final.eval_count == len("Hello there")
    assert final.prompt_eval_count == 2
    assert final.context == [ord("h"), ord("i")] + [ord(c) for c in "Hello there"]


def test_a_repeated_prompt_evaluates_only_what_is_not_cached() -> None:
    engine = _engine("ok")
    assert run(engine, "hello").final.prompt_eval_count == 5
    assert run(engine, "hello").final.prompt_eval_count == 1  # the last prompt token is evaluated again


def test_num_predict_stops_with_length() -> None:
    outcome = run(_engine("Hello there"), "hi", num_predict=4)
    assert outcome.text == "Hell" and outcome.final.done_reason == "length" and outcome.final.eval_count == 4


def test_the_limit_is_the_room_left_in_the_context() -> None:
    for num_predict in (-1, -2, 100):
        outcome = run(_engine("abcdefghijklmnop", num_ctx=10), "hi", num_predict=num_predict)
        assert outcome.text == "abcdefgh" and outcome.final.done_reason == "length"


def test_num_predict_zero_ends_at_once() -> None:
    final = run(_engine("abc"), "hi", num_predict=0).final
    assert final.done_reason == "length" and final.eval_count == 0


def test_stop_string_is_cut_and_never_emitted() -> None:
    outcome = run(_engine("one, two, three"), "hi", stop=(", t",))
    assert outcome.text == "one" and outcome.final.done_reason == "stop"


def test_partial_stop_prefix_is_released_when_it_does_not_complete() -> None:
    assert run(_engine("a<|x b"), "hi", stop=("<|im_end|>",)).text == "a<|x b"


def test_cancel_stops_generation_and_drops_held_text() -> None:
    outcome = run(_engine("abcdef<|"), "p", cancel_after=1, stop=("<|end|>",))
    assert outcome.final.done_reason == "cancel"
    assert [e.content for e in outcome.events if not e.done] == ["a"]


def test_a_cancelled_job_still_waiting_is_never_started() -> None:
    gate = threading.Event()
    engine = FakeEngine(LoadSpec(model_path="x"), script="ab", gate=gate)
    first = threading.Thread(target=run, args=(engine, "one"))
    first.start()
    late = CompletionJob("two", [], Sampling())
    late.cancel.set()
    seen: list = []
    engine.submit(late, seen.append)
    gate.set()
    first.join(5)
    assert run(engine, "three").final.done_reason == "stop" and seen == []


def test_logprobs_ride_on_every_piece() -> None:
    outcome = run(_engine("ab"), "hi", logprobs=True, top_logprobs=2)
    pieces = [e for e in outcome.events if not e.done]
    assert [e.content for e in pieces] == ["a", "b"]
    assert pieces[0].logprobs[0]["token"] == "a" and len(pieces[0].logprobs[0]["top_logprobs"]) == 2


def test_truncation_is_counted_or_refused() -> None:
    outcome = run(_engine("ok", num_ctx=8), "abcdefghijkl", num_keep=2)
    assert outcome.final.truncated_tokens == 5 and outcome.final.context[:2] == [ord("a"), ord("b")]
    refused = run(_engine("ok", num_ctx=8), "abcdefghijkl", truncate=False)
    assert isinstance(refused.error, ContextOverflow) and isinstance(refused.error, BadRequest)


def test_an_image_prompt_counts_image_positions_and_has_no_token_context() -> None:
    final = run(_engine("ok"), "[img-0]hi", images=(b"png",)).final
    assert final.prompt_eval_count == 2 + IMAGE_POSITIONS and final.context == []


def test_wire_lines_keep_todays_json() -> None:
    assert CompletionEvent.model_construct(content="a").wire() == {"content": "a"}
    assert CompletionEvent.model_construct(content="", logprobs=[{"token": "x"}]).wire() == {
        "content": "", "logprobs": [{"token": "x"}]}
    final = CompletionEvent.model_construct(done=True, done_reason="stop", context=[], prompt_eval_count=3,
                                            eval_count=0, truncated_tokens=0)
    assert final.wire() == {"done": True, "done_reason": "stop", "context": [], "prompt_eval_count": 3}


def test_text_stream_keeps_utf8_whole() -> None:
    stream = TextStream(())
    euro = "€".encode()
    assert stream.push(euro[:1]) == ("", False)
    assert stream.push(euro[1:]) == ("€", False)


def test_fit_context_keeps_head_and_recent_tokens() -> None:
    tokens = list(range(100))
    fitted = fit_context(tokens, n_ctx=21, num_keep=4)
    assert len(fitted) == 20 and fitted[:4] == [0, 1, 2, 3] and fitted[-1] == 99


def test_closing_the_engine_fails_what_is_still_queued() -> None:
    gate = threading.Event()
    engine = FakeEngine(LoadSpec(model_path="x"), script="ab", gate=gate)
    errors: list = []
    engine.submit(CompletionJob("one", [], Sampling()), lambda event: None)
    engine.submit(CompletionJob("two", [], Sampling()), errors.append)
    threading.Timer(0.1, gate.set).start()
    engine.close()
    assert engine.closed and len(errors) == 1 and errors[0].message == "model unloaded"
