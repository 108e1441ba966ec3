"""Forced tool calls through the gateway: the prompt ends with the call's constant start, inference gets the
functions to constrain the rest, and the call comes out as ``tool_calls`` even on a model that thinks."""

from __future__ import annotations

import pytest

from corral_common.internal import CompletionEvent, ForcedCall
from corral_api.testing import FakeInference, gateway, model

THINKING_TEMPLATE = ("{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                     "<|im_start|>assistant\n{{ if .Think }}<think>\n{{ end }}")
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def _answer(*pieces: str) -> FakeInference:
    """Inference that writes the rest of a call after the prefix, then stops."""
    return FakeInference(events=[*(CompletionEvent(content=p) for p in pieces),
                                 CompletionEvent(done=True, done_reason="stop", eval_count=len(pieces))])


def _thinker(inference: FakeInference):
    return gateway(model(THINKING_TEMPLATE, capabilities=["completion", "tools", "thinking"]), inference)


def test_a_named_call_is_prefilled_and_comes_out_as_tool_calls_not_thinking() -> None:
    inference = _answer('{"city":', '"Paris"}}')
    body = {"model": "m", "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": NAMED, "stream": False}
    message = _thinker(inference).post("/api/chat", json=body).json()["message"]
    assert "thinking" not in message and message["content"] == ""
    assert message["tool_calls"][0]["function"] == {"index": 0, "name": "get_weather",
                                                    "arguments": {"city": "Paris"}}
    sent = inference.requests[0]
    assert sent.prompt.endswith('<|im_start|>assistant\n{"name":"get_weather","arguments":')
    assert "<think>" not in sent.prompt and sent.format is None
    assert sent.forced_call == ForcedCall.model_validate({"functions": [WEATHER["function"]]})


def test_required_sends_every_function_and_v1_answers_tool_calls() -> None:
    inference = _answer('"get_time","arguments":', "{}}")
    body = {"model": "m", "messages": ASK, "tools": [WEATHER, TIME], "tool_choice": "required"}
    choice = _thinker(inference).post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and "reasoning" not in choice["message"]
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}
    sent = inference.requests[0]
    assert sent.prompt.endswith('assistant\n{"name":') and "<think>" not in sent.prompt
    assert [f.name for f in sent.forced_call.functions] == ["get_weather", "get_time"]


def test_think_still_opens_the_block_when_no_call_is_forced() -> None:
    inference = _answer("hmm</think>", "Sunny.")
    body = {"model": "m", "messages": ASK, "tools": [WEATHER], "stream": False}
    message = _thinker(inference).post("/api/chat", json=body).json()["message"]
    assert message == {"role": "assistant", "content": "Sunny.", "thinking": "hmm"}
    assert inference.requests[0].prompt.endswith("<think>\n") and inference.requests[0].forced_call is None


@pytest.mark.parametrize("tools, choice, message", [
    ([WEATHER], {"type": "function", "function": {"name": "nope"}}, 'tool_choice names "nope"'),
    ([{"type": "web_search"}], "required", "at least one function"),
])
def test_a_call_that_cannot_be_forced_is_a_400(tools: list, choice, message: str) -> None:
    body = {"model": "m", "messages": ASK, "tools": tools, "tool_choice": choice, "stream": False}
    answer = _thinker(FakeInference()).post("/api/chat", json=body)
    assert answer.status_code == 400 and message in answer.json()["error"]
