"""OpenAI compatibility: request translation, chunk translation, error objects (no real services)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from starlette.testclient import TestClient

from corral_common.errors import AppError, BadRequest, NotFound
from corral_common.schemas import ChatRequest

from corral_api import running
from corral_api.openai import responses, translate
from corral_api.openai.errors import error_object
from corral_api.openai.schemas import ChatCompletionRequest, EmbeddingRequest, TextCompletionRequest
from corral_api.openai.sse import DONE
from corral_api.testing import FakeInference, gateway, model


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {"type": "object", "required": ["message", "type", "param", "code"],
                             "additionalProperties": False,
                             "properties": {"message": {"type": "string"},
                                            "type": {"enum": ["invalid_request_error", "not_found_error",
                                                              "api_error"]},
                                            "param": {"type": "null"}, "code": {"type": "null"}}}}}
CHUNK_SCHEMA = {
    "type": "object", "required": ["id", "object", "created", "model", "system_fingerprint", "choices"],
    "properties": {"id": {"pattern": "^chatcmpl-[0-9]+$"}, "object": {"const": "chat.completion.chunk"},
                   "created": {"type": "integer"}, "system_fingerprint": {"const": "fp_ollama"},
                   "choices": {"type": "array", "maxItems": 1, "items": {
                       "type": "object", "required": ["index", "delta", "finish_reason"],
                       "properties": {"delta": {"type": "object"},
                                      "finish_reason": {"enum": [None, "stop", "length", "tool_calls"]}}}}}}


def chat(**body: Any) -> ChatRequest:
    body.setdefault("model", "m")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return translate.chat_request(ChatCompletionRequest.model_validate(body))


def rejects(message: str, **body: Any) -> None:
    with pytest.raises(BadRequest) as caught:
        chat(**body)
    assert caught.value.message == message


# --- requests -------------------------------------------------------------------------------------------------


def test_temperature_and_top_p_default_to_one() -> None:
    assert chat().options == {"temperature": 1.0, "top_p": 1.0}
    assert chat(temperature=0, top_p=0.5).options == {"temperature": 0, "top_p": 0.5}


def test_sampling_fields_become_native_options() -> None:
    options = chat(max_tokens=12, seed=7, stop="\n", frequency_penalty=0.5, presence_penalty=0.25).options
    assert options == {"temperature": 1.0, "top_p": 1.0, "num_predict": 12, "seed": 7, "stop": ["\n"],
                       "frequency_penalty": 0.5, "presence_penalty": 0.25}
    assert chat(stop=["a", "b"]).options["stop"] == ["a", "b"]
    assert chat(max_completion_tokens=5, max_tokens=9).options["num_predict"] == 5


def test_resource_exhaustion_max_tokens_minus_one_is_num_predict_minus_one_capped_by_the_context() -> None:
    # the inference service caps num_predict -1 at the room left in the context (test_completion.py)
    assert chat(max_tokens=-1).options["num_predict"] == -1
    assert chat(max_completion_tokens=-1).options["num_predict"] == -1


def test_stop_must_hold_strings() -> None:
    rejects("invalid type for 'stop' field: float64", stop=["a", 3])
    rejects("invalid type for 'stop' field: bool", stop=True)


def test_corral_extras_merge_into_options_under_explicit_fields() -> None:
    options = chat(num_ctx=2048, options={"top_k": 5, "temperature": 0.3}, top_p=0.2).options
    assert options == {"temperature": 0.3, "top_p": 0.2, "top_k": 5, "num_ctx": 2048}
    assert chat(temperature=0.9, options={"temperature": 0.3}).options["temperature"] == 0.9


@pytest.mark.parametrize(("response_format", "expected"), [
    ({"type": "json_object"}, "json"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, {"type": "object"}),
    ({"type": "text"}, None),
    (None, None),
])
def test_response_format(response_format: Any, expected: Any) -> None:
    assert chat(response_format=response_format).format == expected


def test_response_format_unknown_or_schemaless_is_refused() -> None:
    rejects('invalid response_format type "xml" (must be "text", "json_object" or "json_schema")',
            response_format={"type": "xml"})
    rejects("response_format json_schema needs a 'json_schema.schema' object",
            response_format={"type": "json_schema", "json_schema": {"name": "x"}})


def test_content_parts_join_text_and_collect_images() -> None:
    parts = [{"type": "text", "text": "What is"},
             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
             {"type": "text", "text": "in this picture?"}, {"type": "image_url", "image_url": f"data:;base64,{PNG}"}]
    message = chat(messages=[{"role": "user", "content": parts}]).messages[0]
    assert message.role == "user"
    assert message.content == "What is\nin this picture?"
    assert message.images == [PNG, PNG]


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://example.com/cat.png"])
def test_image_urls_are_refused(url: str) -> None:
    rejects("image URLs are not currently supported, please use base64 encoded data instead",
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


def test_bad_images_and_parts_are_refused() -> None:
    rejects("invalid image input", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64," + PNG}}]}])
    rejects("invalid image input", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}])
    rejects("invalid message format", messages=[{"role": "user", "content": [{"type": "input_audio"}]}])


def test_messages_must_not_be_empty_and_need_content() -> None:
    rejects("[] is too short - 'messages'", messages=[])
    rejects("invalid message content type: <nil>", messages=[{"role": "user", "content": None}])


def test_tool_calls_and_tool_results_translate() -> None:
    messages = [{"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    native = chat(messages=messages).messages
    assert native[1].tool_calls == [{"id": "call_1", "function": {"index": 0, "name": "get_weather",
                                                                  "arguments": {"city": "Paris"}}}]
    assert native[2].tool_name == "get_weather" and native[2].tool_call_id == "call_1"
    rejects("invalid tool call arguments", messages=[{"role": "assistant", "tool_calls": [
        {"id": "c", "function": {"name": "f", "arguments": "not json"}}]}])


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


def test_tool_choice_none_drops_tools_and_auto_keeps_them() -> None:
    assert chat(tools=TOOLS, tool_choice="none").tools is None
    assert chat(tools=TOOLS, tool_choice="auto").tools == TOOLS
    assert chat(tools=TOOLS).tools == TOOLS


@pytest.mark.skipif("tool_choice" in ChatRequest.model_fields, reason="the native side now honours tool_choice")
def test_tool_choice_the_native_side_cannot_honour_is_refused() -> None:
    rejects('tool_choice "required" is not supported yet', tools=TOOLS, tool_choice="required")
    rejects('tool_choice {"type":"function","function":{"name":"f"}} is not supported yet', tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "f"}})


@pytest.mark.skipif("tool_choice" not in ChatRequest.model_fields, reason="the native side has no tool_choice yet")
def test_tool_choice_required_and_named_pass_through_to_the_native_request() -> None:
    assert chat(tools=TOOLS, tool_choice="required").tool_choice == "required"
    named = {"type": "function", "function": {"name": "f"}}
    assert chat(tools=TOOLS, tool_choice=named).tool_choice == named
    assert chat(tools=TOOLS, tool_choice="none").tool_choice is None


def test_unknown_tool_choice_is_refused() -> None:
    rejects('invalid tool_choice "maybe" (must be "none", "auto", "required" or a named function)',
            tool_choice="maybe")


def test_logprobs_and_reasoning_effort() -> None:
    native = chat(logprobs=True, top_logprobs=3, reasoning_effort="minimal")
    assert (native.logprobs, native.top_logprobs, native.think) == (True, 3, "low")
    assert chat(reasoning={"effort": "none"}).think is False
    rejects('invalid reasoning value: "huge" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", '
            '"max", or "none")', reasoning_effort="huge")


def test_user_is_accepted_and_ignored() -> None:
    assert chat(user="alice").model == "m"


def test_completion_request() -> None:
    [native] = translate.generate_requests(TextCompletionRequest.model_validate(
        {"model": "m", "prompt": "Once", "suffix": "end", "max_tokens": 4, "logprobs": 2, "stop": "x"}))
    assert (native.prompt, native.suffix, native.logprobs, native.top_logprobs) == ("Once", "end", True, 2)
    assert native.options == {"temperature": 1.0, "top_p": 1.0, "num_predict": 4, "stop": ["x"]}


@pytest.mark.parametrize(("given", "expected"), [("", [""]), ("a", ["a"]), (["a", "b"], ["a", "b"]),
                                                 ([9906, 1917], ["Hello world"]),  # cl100k_base ids
                                                 ([[9906], [1917]], ["Hello", " world"])])
def test_embedding_inputs(given: Any, expected: list[str]) -> None:
    assert translate.embedding_inputs(given) == expected


@pytest.mark.parametrize(("given", "message"), [
    (None, "invalid input"), ([], "invalid input"), ([[1, 2], []], "invalid input type"), ([1, "a"], "invalid input type"),
    ({"a": 1}, "invalid input type"),
])
def test_embedding_inputs_refused(given: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        translate.embedding_inputs(given)


def test_embedding_request_checks_encoding_format() -> None:
    native = translate.embed_request(EmbeddingRequest.model_validate({"model": "m", "input": "x", "dimensions": 8}))
    assert (native.input, native.dimensions) == (["x"], 8)
    with pytest.raises(BadRequest, match=r"Invalid value for 'encoding_format' = hex\. Supported values: "):
        translate.embed_request(EmbeddingRequest.model_validate({"model": "m", "input": "x",
                                                                 "encoding_format": "hex"}))


# --- responses ------------------------------------------------------------------------------------------------


def native_chunk(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": content}, "done": False, **extra}


FINAL = {"model": "m", "created_at": "2025-01-01T00:00:00Z", "message": {"role": "assistant", "content": ""},
         "done": True, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 3}


def test_chat_stream_role_first_then_finish_and_usage() -> None:
    stream = responses.ChatStream("chatcmpl-7", 1700000000, include_usage=True)
    out = [c for n in (native_chunk("Hel"), native_chunk("lo"), FINAL) for c in stream.translate(n)]
    for chunk in out:
        jsonschema.validate(chunk, CHUNK_SCHEMA)
    deltas = [c["choices"][0]["delta"] for c in out[:-1]]
    assert deltas == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert out[2]["choices"][0]["finish_reason"] == "stop"
    assert out[3]["choices"] == []
    assert out[3]["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert {c["created"] for c in out} == {1700000000} and {c["id"] for c in out} == {"chatcmpl-7"}


def test_chat_stream_without_usage_and_length_reason() -> None:
    stream = responses.ChatStream("chatcmpl-1", 1, include_usage=False)
    out = stream.translate(native_chunk("a")) + stream.translate({**FINAL, "done_reason": "length"})
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, "length"]


def test_chat_stream_splits_thinking_from_content_and_reports_tool_calls() -> None:
    stream = responses.ChatStream("chatcmpl-1", 1, include_usage=False)
    call = {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}
    mixed = native_chunk("", logprobs=[{"token": "x", "logprob": -0.1}])
    mixed["message"] |= {"thinking": "hmm", "tool_calls": [call]}
    out = stream.translate(mixed) + stream.translate(FINAL)
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "reasoning": "hmm"}
    assert out[0]["choices"][0]["logprobs"] == {"content": [{"token": "x", "logprob": -0.1}]}
    assert out[1]["choices"][0]["delta"] == {"content": "", "tool_calls": [
        {"id": "call_x", "index": 0, "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}
    assert out[2]["choices"][0]["finish_reason"] == "tool_calls"


def test_empty_completion_still_opens_with_a_role_chunk() -> None:
    out = responses.ChatStream("chatcmpl-1", 1, include_usage=False).translate(FINAL)
    assert [c["choices"][0]["delta"] for c in out] == [{"role": "assistant", "content": ""}, {}]


async def _aiter(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


def test_chat_completion_object() -> None:
    native = asyncio.run(running.collect_chat(_aiter([native_chunk("Hel"), native_chunk("lo"), FINAL])))
    result = responses.chat_completion("chatcmpl-3", 5, native)
    assert result == {"id": "chatcmpl-3", "object": "chat.completion", "created": 5, "model": "m",
                      "system_fingerprint": "fp_ollama",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}


def test_completion_stream_zero_usage_on_every_chunk_then_real_usage() -> None:
    stream = responses.CompletionStream("cmpl-1", 1, include_usage=True, echo="Say: ")
    gen = {"model": "m", "response": "hi", "done": False}
    final = {"model": "m", "response": "", "done": True, "done_reason": "length", "prompt_eval_count": 4,
             "eval_count": 1}
    out = stream.translate(gen) + stream.translate(final)
    assert list(out[0]) == ["id", "object", "created", "choices", "model", "system_fingerprint", "usage"]
    assert [c["choices"][0]["text"] for c in out[:2]] == ["Say: hi", ""]
    assert out[0]["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert out[1]["choices"][0]["finish_reason"] == "length"
    assert out[2]["choices"] == [] and out[2]["usage"]["total_tokens"] == 5


def test_completion_object_with_echo_and_logprobs() -> None:
    native = {"model": "m", "response": "ab", "done": True, "done_reason": "stop", "eval_count": 2,
              "logprobs": [{"token": "a", "logprob": -1.0, "top_logprobs": [{"token": "a", "logprob": -1.0}]},
                           {"token": "b", "logprob": -2.0}]}
    result = responses.completion("cmpl-1", 1, native, echo="x ")
    choice = result["choices"][0]
    assert choice["text"] == "x ab" and choice["finish_reason"] == "stop"
    assert choice["logprobs"] == {"tokens": ["a", "b"], "token_logprobs": [-1.0, -2.0],
                                  "top_logprobs": [{"a": -1.0}, {}], "text_offset": [2, 3]}


def test_model_objects() -> None:
    tags = {"models": [{"name": "smollm2:135m", "model": "smollm2:135m",
                        "modified_at": "2025-05-10T08:06:48.639712648-07:00"},
                       {"name": "me/tiny:latest", "model": "me/tiny:latest", "modified_at": "2024-01-01T00:00:00Z"}]}
    listed = responses.model_list(tags)
    assert listed["data"][0] == {"id": "smollm2:135m", "object": "model", "created": 1746889608,
                                 "owned_by": "library"}
    assert listed["data"][1]["owned_by"] == "me" and listed["data"][1]["created"] == 1704067200
    assert responses.model_list({"models": []}) == {"object": "list", "data": None}


def test_base64_embeddings_are_little_endian_float32() -> None:
    vector = [0.5, -0.25, 1.0]
    encoded = responses.floats_to_base64(vector)
    assert list(struct.unpack("<3f", base64.b64decode(encoded))) == vector
    result = responses.embedding_list("m", {"embeddings": [vector], "prompt_eval_count": 4}, "base64")
    assert result == {"object": "list", "data": [{"object": "embedding", "embedding": encoded, "index": 0}],
                      "model": "m", "usage": {"prompt_tokens": 4, "total_tokens": 4}}
    assert responses.embedding_list("m", {"embeddings": [vector]}, None)["data"][0]["embedding"] == vector


@pytest.mark.parametrize(("error", "kind"), [(BadRequest("bad"), "invalid_request_error"),
                                             (NotFound("gone"), "not_found_error"),
                                             (AppError("boom", 503), "api_error"), (AppError("x"), "api_error")])
def test_error_objects_follow_the_status(error: AppError, kind: str) -> None:
    body = error_object(error.status, error.message)
    jsonschema.validate(body, ERROR_SCHEMA)
    assert body["error"]["type"] == kind and body["error"]["message"] == error.message


# --- the /v1 routes against fake services ---------------------------------------------------------------------

MODEL = model("{{ .Prompt }}")


def client(inference: FakeInference | None = None) -> TestClient:
    return gateway(MODEL, inference)


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.split("\n\n") if e]


def test_route_errors_are_openai_objects_and_native_errors_keep_their_shape() -> None:
    http = client()
    for response, status in [(http.post("/v1/chat/completions", content=b"{nope"), 400),
                             (http.post("/v1/chat/completions", json={**BODY, "temperature": "hot"}), 400),
                             (http.post("/v1/chat/completions", json={**BODY, "model": "ghost"}), 404),
                             (http.post("/v1/chat/completions", json={**BODY, "stream": True, "model": "ghost"}), 404),
                             (http.get("/v1/models/ghost"), 404)]:
        assert response.status_code == status
        jsonschema.validate(response.json(), ERROR_SCHEMA)
    assert http.post("/v1/chat/completions", json={**BODY, "model": "ghost"}).json()["error"]["message"] == \
        "model 'ghost' not found"
    assert http.post("/api/chat", json={**BODY, "model": "ghost"}).json() == {"error": "model 'ghost' not found"}


def test_chat_stream_over_sse() -> None:
    inference = FakeInference()
    response = client(inference).post("/v1/chat/completions",
                                      json={**BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("\n\n") and response.content.endswith(DONE)
    payloads = [json.loads(e) for e in events(response.text)[:-1]]
    assert [p["choices"][0]["delta"] for p in payloads[:3]] == [{"role": "assistant", "content": "Hel"},
                                                                 {"content": "lo"}, {}]
    assert payloads[3]["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
                                    "prompt_tokens_details": {"cached_tokens": 0}}
    assert inference.requests[0].options["temperature"] == 0 and inference.requests[0].options["top_p"] == 1.0


def test_stream_error_after_the_first_byte_is_a_final_error_event() -> None:
    response = client(FakeInference(fail_after=1)).post("/v1/chat/completions", json={**BODY, "stream": True})
    assert response.status_code == 200
    last = events(response.text)[-1]
    assert json.loads(last) == error_object(500, "runner crashed")
    assert "[DONE]" not in response.text


def test_non_stream_chat_and_models_routes() -> None:
    http = client()
    result = http.post("/v1/chat/completions", json=BODY).json()
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert result["id"].startswith("chatcmpl-") and result["usage"]["total_tokens"] == 7
    assert http.get("/v1/models/m").json() == {"id": "m", "object": "model", "created": 1704067200,
                                               "owned_by": "library"}
