"""POST /v1/messages and /v1/messages/count_tokens: translation, the event converter, errors, and the routes
against fake services."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import AppError, BadRequest
from corral_common.internal import CompletionEvent

from corral_api.anthropic import translate
from corral_api.anthropic.schemas import CountTokensRequest, MessagesRequest
from corral_api.anthropic.stream import MessagesStream, stop_reason
from corral_api.auth import INFERENCE, denial_response, route_rule
from corral_api.clients import Denial
from corral_api.testing import FakeInference, gateway, model
from corral_api.testing import native_chunk as chunk

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {"name": "get_weather", "description": "The weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
MODEL = model("{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}")
THINKER = model("{{ .Prompt }}<think>", capabilities=["completion", "thinking"])
USER = [{"role": "user", "content": "hi"}]


def client(resolved=MODEL, inference: FakeInference | None = None) -> TestClient:
    return gateway(resolved, inference)


def native(**body: Any):
    body.setdefault("model", "m")
    body.setdefault("max_tokens", 16)
    body.setdefault("messages", USER)
    return translate.chat_request(MessagesRequest.model_validate(body))


def refuses(message: str, **body: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        native(**body)
    assert caught.value.message == message


def sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) for each SSE event."""
    events = []
    for block in filter(None, text.split("\n\n")):
        name, data = block.split("\n", 1)
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


# --- request translation ---------------------------------------------------------------------------

def test_system_string_and_turns_become_native_messages_with_options() -> None:
    req = native(system="Be brief.", temperature=0.2, top_p=0.9, top_k=5, stop_sequences=["END"],
                 metadata={"user_id": "u1"},
                 messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                           {"role": "user", "content": [{"type": "text", "text": "Why "},
                                                        {"type": "text", "text": "?"}]}])
    assert [(m.role, m.content) for m in req.messages] == [("system", "Be brief."), ("user", "Hi"),
                                                          ("assistant", "Hello"), ("user", "Why ?")]
    assert req.options == {"num_predict": 16, "temperature": 0.2, "top_p": 0.9, "top_k": 5, "stop": ["END"]}
    assert req.stream is False and req.think is None and req.tools is None


def test_system_blocks_are_joined() -> None:
    req = native(system=[{"type": "text", "text": "A. "}, {"type": "text", "text": "B."}])
    assert req.messages[0].role == "system" and req.messages[0].content == "A. B."
    assert native(system="").messages[0].role == "user"


def test_image_blocks_become_native_images() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    req = native(messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}])
    assert req.messages[0].images == [PNG] and req.messages[0].content == "What?"


def test_tool_use_and_tool_result_round_trip() -> None:
    req = native(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "Use the tool.", "signature": "s"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "Sunny"}]},
                                     {"type": "text", "text": "And so?"}]}])
    assistant, result, follow = req.messages[1:]
    assert assistant.role == "assistant" and assistant.thinking == "Use the tool."
    assert assistant.tool_calls == [{"id": "toolu_1", "function": {"index": 0, "name": "get_weather",
                                                                   "arguments": {"city": "Paris"}}}]
    assert (result.role, result.content, result.tool_call_id, result.tool_name) == \
        ("tool", "Sunny", "toolu_1", "get_weather")
    assert (follow.role, follow.content) == ("user", "And so?")
    assert req.tools == [{"type": "function", "function": {"name": "get_weather", "description": "The weather",
                                                           "parameters": WEATHER["input_schema"]}}]


@pytest.mark.parametrize("choice, expected", [
    ({"type": "auto"}, None), ({"type": "any"}, "required"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}})])
def test_tool_choice_maps_to_the_native_choice(choice, expected) -> None:
    req = native(tools=[WEATHER], tool_choice=choice)
    assert req.tool_choice == expected and req.tools


def test_tool_choice_none_sends_no_tools() -> None:
    assert native(tools=[WEATHER], tool_choice={"type": "none"}).tools is None


@pytest.mark.parametrize("thinking, think", [({"type": "enabled", "budget_tokens": 1024}, True),
                                             ({"type": "disabled"}, False), (None, None)])
def test_thinking_maps_to_think(thinking, think) -> None:
    assert native(thinking=thinking).think is think


@pytest.mark.parametrize("effort, think", [("low", "low"), ("xhigh", "high"), ("max", "max"), ("odd", None)])
def test_output_config_effort_is_the_think_level(effort, think) -> None:
    assert native(output_config={"effort": effort}).think == think
    assert native(output_config={"effort": effort}, thinking={"type": "disabled"}).think is False


def test_count_tokens_body_needs_no_max_tokens() -> None:
    req = translate.chat_request(CountTokensRequest.model_validate({"model": "m", "messages": USER}))
    assert req.messages[0].content == "hi" and not req.options


@pytest.mark.parametrize("message, body", [
    ("model is required", {"model": ""}),
    ("max_tokens is required and must be positive", {"max_tokens": None}),
    ("max_tokens is required and must be positive", {"max_tokens": 0}),
    ("messages is required", {"messages": []}),
    ("invalid image source type: url. Only base64 images are supported.",
     {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}]}),
    ("invalid image source", {"messages": [{"role": "user", "content": [{"type": "image"}]}]}),
    ("tool_use block missing required 'id' field",
     {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]}),
    ("tool_use block missing required 'name' field",
     {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "input": {}}]}]}),
    ("tool_use block 'input' must be an object",
     {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]}),
    ('invalid tool_choice type "function" (must be "auto", "any", "tool" or "none")',
     {"tools": [WEATHER], "tool_choice": {"type": "function"}}),
    ("tool_choice of type \"tool\" needs a 'name'", {"tools": [WEATHER], "tool_choice": {"type": "tool"}}),
    ("tools: every tool needs a 'name'", {"tools": [{"description": "nameless"}]}),
    ('invalid input_schema for tool "f": must be an object', {"tools": [{"name": "f", "input_schema": "x"}]}),
    ("web_search server tools are not supported: corral does not run searches for this API; declare a client "
     "tool and call the search yourself", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
])
def test_every_refusal_says_why(message: str, body: dict[str, Any]) -> None:
    refuses(message, **body)


def test_bad_base64_image_is_refused() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "not base64!"}}
    with pytest.raises(BadRequest) as caught:
        native(messages=[{"role": "user", "content": [image]}])
    assert caught.value.message.startswith("invalid base64 image data:")


# --- the event converter ---------------------------------------------------------------------------

CALL = {"id": "call_abc12345", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}


def test_thinking_text_and_tool_use_stream_as_blocks_in_order() -> None:
    stream = MessagesStream("m", "msg_1")
    events = [e for c in (chunk(thinking="Hm"), chunk(thinking="m."), chunk("It is"), chunk(calls=[CALL]),
                          chunk(done_reason="stop", prompt_eval_count=7, eval_count=3))
              for e in stream.translate(c)]
    kinds = [(e["type"], e.get("index"), e.get("delta", e.get("content_block", {})).get("type")) for e in events]
    assert kinds == [("message_start", None, None), ("ping", None, None),
                     ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"),
                     ("content_block_delta", 0, "thinking_delta"), ("content_block_stop", 0, None),
                     ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"),
                     ("content_block_stop", 1, None),
                     ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
                     ("content_block_stop", 2, None), ("message_delta", None, None), ("message_stop", None, None)]
    assert events[9]["content_block"] == {"type": "tool_use", "id": "call_abc12345", "name": "get_weather",
                                          "input": {}}
    assert json.loads(events[10]["delta"]["partial_json"]) == {"city": "Paris"}
    assert events[12] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                          "usage": {"input_tokens": 7, "output_tokens": 3}}
    assert stream.message["content"] == [{"type": "thinking", "thinking": "Hmm.", "signature": ""},
                                         {"type": "text", "text": "It is"},
                                         {"type": "tool_use", "id": "call_abc12345", "name": "get_weather",
                                          "input": {"city": "Paris"}}]
    assert stream.message["stop_reason"] == "tool_use" and stream.message["id"] == "msg_1"


@pytest.mark.parametrize("done_reason, called, expected", [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("stop", True, "tool_use"),
    ("length", True, "tool_use"), ("cancel", False, "stop_sequence"), ("", False, None)])
def test_stop_reason_mapping(done_reason: str, called: bool, expected: str | None) -> None:
    assert stop_reason(done_reason, called) == expected


def test_an_empty_answer_still_starts_and_stops_the_message() -> None:
    stream = MessagesStream("m")
    kinds = [e["type"] for e in stream.translate(chunk(done_reason="length", eval_count=1))]
    assert kinds == ["message_start", "ping", "message_delta", "message_stop"]
    assert stream.message["content"] == [] and stream.message["stop_reason"] == "max_tokens"
    assert stream.message["id"].startswith("msg_") and len(stream.message["id"]) == 28


def test_failure_event_is_anthropics_error() -> None:
    assert MessagesStream("m").failed(AppError("runner crashed")) == {
        "type": "error", "error": {"type": "api_error", "message": "runner crashed"}}


# --- the routes against fake services ---------------------------------------------------------------

def test_message_not_streamed() -> None:
    answer = client().post("/v1/messages", json={"model": "m", "max_tokens": 8, "system": "Be brief.",
                                                 "messages": USER}, headers={"anthropic-version": "2023-06-01"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": "Hello"}] and body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None and body["usage"] == {"input_tokens": 5, "output_tokens": 2}


def test_message_streamed_is_named_events_in_order() -> None:
    inference = FakeInference()
    answer = client(inference=inference).post("/v1/messages", json={"model": "m", "max_tokens": 8, "stream": True,
                                                                    "messages": USER})
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse(answer.text)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                            "content_block_delta", "content_block_stop", "message_delta",
                                            "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello"
    assert inference.requests[0].options["num_predict"] == 8


def test_thinking_model_streams_a_thinking_block() -> None:
    inference = FakeInference(events=[CompletionEvent(content="Ponder</think>"), CompletionEvent(content="Hi"),
                                      CompletionEvent(done=True, done_reason="stop", eval_count=3)])
    body = {"model": "m", "max_tokens": 8, "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    answer = client(THINKER, inference).post("/v1/messages", json=body).json()
    assert answer["content"] == [{"type": "thinking", "thinking": "Ponder", "signature": ""},
                                 {"type": "text", "text": "Hi"}]


def test_thinking_is_dropped_for_a_model_that_cannot_think() -> None:
    body = {"model": "m", "max_tokens": 8, "messages": USER, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    answer = client().post("/v1/messages", json=body)
    assert answer.status_code == 200 and answer.json()["content"] == [{"type": "text", "text": "Hello"}]


def test_errors_have_anthropics_shape_and_status() -> None:
    gw = client()
    missing = gw.post("/v1/messages", json={"model": "nope", "max_tokens": 8, "messages": USER})
    assert missing.status_code == 404 and missing.json() == {
        "type": "error", "error": {"type": "not_found_error", "message": "model 'nope' not found"}}
    bad = gw.post("/v1/messages", json={"model": "m", "messages": USER})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    blind = gw.post("/v1/messages", json={"model": "m", "max_tokens": 8, "stream": True,
                                          "messages": [{"role": "user", "content": [image]}]})
    assert blind.status_code == 400 and blind.json()["type"] == "error"
    assert "does not support images" in blind.json()["error"]["message"]
    assert gw.post("/v1/messages", content=b"{").json()["error"]["type"] == "invalid_request_error"


def test_an_error_after_the_first_event_is_an_error_event() -> None:
    answer = client(inference=FakeInference(fail_after=1)).post(
        "/v1/messages", json={"model": "m", "max_tokens": 8, "stream": True, "messages": USER})
    events = sse(answer.text)
    assert answer.status_code == 200 and events[-1] == (
        "error", {"type": "error", "error": {"type": "api_error", "message": "runner crashed"}})
    assert "message_stop" not in [name for name, _ in events]


def test_count_tokens_renders_the_prompt_and_counts_it() -> None:
    inference = FakeInference()
    gw = client(inference=inference)
    short = gw.post("/v1/messages/count_tokens", json={"model": "m", "messages": USER})
    longer = gw.post("/v1/messages/count_tokens", json={"model": "m", "system": "Be brief.", "messages": USER})
    assert short.json() == {"input_tokens": 2} and longer.json() == {"input_tokens": len("Be brief. hi")}
    assert inference.tokenized[-1].text == "Be brief. hi" and inference.requests == []
    assert gw.post("/v1/messages/count_tokens", json={"model": "nope", "messages": USER}).status_code == 404


def test_messages_need_the_inference_scope_and_denials_have_anthropics_shape() -> None:
    assert route_rule("/v1/messages") == INFERENCE and route_rule("/v1/messages/count_tokens") == INFERENCE
    denied = denial_response("/v1/messages", Denial(401, "unauthorized: missing or invalid API key", {}))
    assert denied.status_code == 401 and json.loads(denied.body) == {"type": "error", "error": {
        "type": "authentication_error", "message": "unauthorized: missing or invalid API key"}}
