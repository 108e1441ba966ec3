"""POST /v1/responses: request translation, the event converter, and the route against fake services."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
from starlette.testclient import TestClient

from corral_common.errors import AppError, BadRequest, UnsupportedMediaType

from corral_api.openai import responses_api
from corral_api.openai.responses_stream import ResponsesStream
from corral_api.openai.schemas import ResponsesRequest
from corral_api.testing import FakeInference, gateway, model
from corral_api.testing import native_chunk as chunk


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


ERROR_SCHEMA = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "param", "code"],
    "properties": {"message": {"type": "string"}, "type": {"enum": ["invalid_request_error", "not_found_error",
                                                                      "api_error"]}}}}}
MODEL = model("{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}")


def client(inference: FakeInference | None = None) -> TestClient:
    return gateway(MODEL, inference)


def native(**body: Any):
    body.setdefault("model", "m")
    body.setdefault("input", "hi")
    return responses_api.chat_request(ResponsesRequest.model_validate(body))


def refuses(message: str, **body: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        native(**body)
    assert caught.value.message == message


def test_string_input_and_instructions_become_system_then_user() -> None:
    req = native(input="Why?", instructions="Be brief.", max_output_tokens=7, temperature=0.2)
    assert [(m.role, m.content) for m in req.messages] == [("system", "Be brief."), ("user", "Why?")]
    assert req.options == {"temperature": 0.2, "top_p": 1.0, "num_predict": 7}
    assert req.stream is False and req.format is None and req.think is None


def test_items_make_a_conversation_with_calls_results_and_reasoning() -> None:
    req = native(input=[
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rules."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look: "},
                                     {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]},
        {"type": "reasoning", "encrypted_content": "I should call it."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]}])
    roles = [m.role for m in req.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert req.messages[1].content == "Look: " and req.messages[1].images == [PNG]
    call = req.messages[2]
    assert call.thinking == "I should call it." and call.tool_calls == [
        {"id": "call_1", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert (req.messages[3].content, req.messages[3].tool_name, req.messages[3].tool_call_id) == \
        ("sunny", "get_weather", "call_1")


@pytest.mark.parametrize(("body", "message"), [
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_data": "x"}]}]},
     "file inputs are not currently supported"),
    ({"previous_response_id": "resp_1"}, "previous_response_id is not supported: corral implements only the "
                                         "stateless form of /v1/responses, so send the whole conversation in 'input'"),
    ({"background": True}, "background responses are not supported (nothing is stored)"),
    ({"frobnicate": 1}, 'unsupported field "frobnicate" for /v1/responses'),
    ({"tools": [{"type": "web_search"}]}, "web_search tools are not supported on /v1/responses: corral does not "
                                          "run searches for this API; declare a function tool and call the search "
                                          "yourself"),
    ({"input": [{"type": "item_reference", "id": "x"}]},
     "item_reference inputs are not supported: corral implements only the stateless form"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{nope"}]},
     "invalid tool call arguments"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "image URLs are not currently supported, please use base64 encoded data instead"),
    ({"input": [{"type": "mystery"}]}, 'input[0]: unknown input item type: "mystery"'),
    ({"input": []}, "input must not be empty"),
    ({"reasoning": {"effort": "lots"}}, 'invalid reasoning value: "lots" (must be "minimal", "low", "medium", '
                                        '"high", "xhigh", "ultra", "max", or "none")'),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format json_schema needs a 'schema' object"),
    ({"tool_choice": {"type": "web_search"}, "tools": [WEATHER]},
     'tool_choice of type "web_search" is not supported (use "none", "auto", "required" or '
     '{"type": "function", "name": ...})'),
    ({"include": ["message.output_text.logprobs"]},
     'include "message.output_text.logprobs" is not supported (supported: reasoning.encrypted_content)'),
])
def test_what_cannot_be_honoured_is_a_clear_400(body: dict[str, Any], message: str) -> None:
    refuses(message, **body)


def test_tools_choice_format_and_effort_reach_the_native_request() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    req = native(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"},
                 text={"format": {"type": "json_schema", "name": "out", "schema": schema}},
                 reasoning={"effort": "minimal"}, truncation="disabled", options={"seed": 3})
    assert req.tools == [{"type": "function", "function": {"name": "get_weather", "description": "The weather",
                                                           "parameters": WEATHER["parameters"]}}]
    assert req.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert req.format == schema and req.think == "low" and req.truncate is False and req.options["seed"] == 3
    assert native(text={"format": {"type": "json_object"}}).format == "json"
    assert native(tools=[WEATHER], tool_choice="none").tools is None


def test_compressed_bodies_are_refused_with_415() -> None:
    assert responses_api.decoded_body(b"{}", None) == b"{}"
    with pytest.raises(UnsupportedMediaType, match="zstd is not supported"):
        responses_api.decoded_body(b"\x28\xb5\x2f\xfd", "zstd")


def stream(**body: Any) -> ResponsesStream:
    return ResponsesStream(ResponsesRequest.model_validate({"model": "m", "input": "x", **body}))


def test_thinking_then_text_events_in_order_with_rising_sequence_numbers() -> None:
    converter = stream()
    events = [e for c in [chunk(thinking="hm"), chunk(thinking="m"), chunk("Hi"),
                          chunk(done_reason="stop", prompt_eval_count=3, eval_count=4)] for e in converter.translate(c)]
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    reasoning, message = final["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "hmm"}] and reasoning["encrypted_content"] == "hmm"
    assert message["content"][0]["text"] == "Hi" and message["status"] == "completed"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["total_tokens"] == 7


def test_tool_calls_become_function_call_items_and_parallel_false_keeps_one() -> None:
    calls = [{"id": "call_a", "function": {"index": 0, "name": "f", "arguments": {"x": 1}}},
             {"id": "call_b", "function": {"index": 1, "name": "g", "arguments": {}}}]
    converter = stream(parallel_tool_calls=False)
    events = converter.translate(chunk(calls=calls, done_reason="stop"))
    kinds = [e["type"] for e in events]
    assert kinds[2:] == ["response.output_item.added", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    (item,) = converter.response["output"]
    assert (item["type"], item["call_id"], item["name"], item["arguments"]) == ("function_call", "call_a", "f",
                                                                                 '{"x":1}')
    assert len(stream().translate(chunk(calls=calls, done_reason="stop"))[-1]["response"]["output"]) == 2


def test_a_cut_answer_is_incomplete() -> None:
    events = stream().translate(chunk("abc", done_reason="length", eval_count=3))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if block:
            head, data = block.split("\n", 1)
            out.append((head.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_route_streams_named_events_without_done() -> None:
    response = client().post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    assert all(name == payload["type"] for name, payload in events) and "[DONE]" not in response.text
    assert events[-1][1]["response"]["output"][0]["content"][0]["text"] == "Hello"


def test_route_error_before_and_after_the_first_byte() -> None:
    http = client()
    for response, status in [(http.post("/v1/responses", json={"model": "ghost", "input": "hi"}), 404),
                             (http.post("/v1/responses", json={"model": "ghost", "input": "hi", "stream": True}), 404),
                             (http.post("/v1/responses", json={"model": "m", "previous_response_id": "r"}), 400),
                             (http.post("/v1/responses", content=b"x", headers={"content-encoding": "zstd"}), 415)]:
        assert response.status_code == status
        jsonschema.validate(response.json(), ERROR_SCHEMA)
    late = client(FakeInference(fail_after=1)).post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    name, payload = named_events(late.text)[-1]
    assert late.status_code == 200 and name == "response.failed"
    assert payload["response"]["error"] == {"code": "server_error", "message": "runner crashed"}


def test_route_non_streamed_object_and_request_reaching_inference() -> None:
    inference = FakeInference()
    result = client(inference).post("/v1/responses", json={"model": "m", "input": "hi", "max_output_tokens": 9,
                                                           "instructions": "Be kind."}).json()
    assert result["object"] == "response" and result["status"] == "completed" and result["id"].startswith("resp_")
    assert result["output"][0]["content"][0]["text"] == "Hello" and result["instructions"] == "Be kind."
    assert inference.requests[0].options["num_predict"] == 9 and "Be kind." in inference.requests[0].prompt


def test_app_error_is_typed() -> None:
    assert stream().failed(AppError("x", 400))["response"]["error"]["code"] == "invalid_request"
