"""The official openai SDK's Responses API (client.responses) against a real corral running smollm2:135m."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "max_output_tokens": 16}
WEATHER = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    """The official OpenAI client pointed at the session server's /v1."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key="corral", max_retries=0)


def test_response_not_streamed_has_text_and_usage(sdk: openai.OpenAI) -> None:
    result = sdk.responses.create(model=MODEL, input="Name three colors.", instructions="Answer briefly.", **GREEDY)
    assert result.object == "response" and result.id.startswith("resp_") and result.model == MODEL
    assert result.status in ("completed", "incomplete") and result.output_text.strip()
    assert result.output[0].type == "message" and result.output[0].role == "assistant"
    assert result.usage.input_tokens > 0 and 0 < result.usage.output_tokens <= 16
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens


def test_max_output_tokens_cut_is_reported_incomplete(sdk: openai.OpenAI) -> None:
    result = sdk.responses.create(model=MODEL, input="Count from one to fifty in words.", temperature=0,
                                  max_output_tokens=3)
    assert result.status == "incomplete" and result.incomplete_details.reason == "max_output_tokens"
    assert result.usage.output_tokens == 3


def test_stream_events_add_up_to_the_non_streamed_text(sdk: openai.OpenAI) -> None:
    events = list(sdk.responses.create(model=MODEL, input="Name three colors.", stream=True, **GREEDY))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed and events[-1].response.output_text == streamed
    whole = sdk.responses.create(model=MODEL, input="Name three colors.", **GREEDY)
    assert whole.output_text == streamed


def test_raw_stream_is_named_events_without_done(server) -> None:
    body = {"model": MODEL, "input": "Hi", "stream": True, **GREEDY}
    response = httpx.post(server.url + "/v1/responses", json=body, timeout=120)
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    for block in blocks:
        head, data = block.split("\n", 1)
        assert json.loads(data.removeprefix("data: "))["type"] == head.removeprefix("event: ")
    assert "[DONE]" not in response.text


def test_forced_function_call_comes_back_as_a_function_call_item(sdk: openai.OpenAI) -> None:
    result = sdk.responses.create(model=MODEL, input="What is the weather in Paris?", tools=WEATHER,
                                  tool_choice={"type": "function", "name": "get_weather"}, temperature=0,
                                  max_output_tokens=40)
    (call,) = [item for item in result.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_") and call.status == "completed"
    assert isinstance(json.loads(call.arguments), dict)
    events = list(sdk.responses.create(model=MODEL, input="What is the weather in Paris?", tools=WEATHER,
                                       tool_choice="required", stream=True, temperature=0, max_output_tokens=40))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and isinstance(json.loads(done[0].arguments), dict)


def test_a_function_result_flows_back_into_the_conversation(sdk: openai.OpenAI) -> None:
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
               {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 degrees"}]
    result = sdk.responses.create(model=MODEL, input=history, tools=WEATHER, tool_choice="none", **GREEDY)
    assert result.output_text.strip() and all(item.type == "message" for item in result.output)


def test_json_schema_text_format_validates(sdk: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                               "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    result = sdk.responses.create(model=MODEL, input="Make up a person.", temperature=0, max_output_tokens=48,
                                  text={"format": {"type": "json_schema", "name": "person", "schema": schema}})
    jsonschema.validate(json.loads(result.output_text), schema)


def test_errors_raise_the_right_sdk_exceptions(sdk: openai.OpenAI, server) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.responses.create(model="no-such-model", input="hi")
    assert "no-such-model" in missing.value.message
    with pytest.raises(openai.BadRequestError) as stateful:
        sdk.responses.create(model=MODEL, input="hi", previous_response_id="resp_1")
    assert "stateless" in stateful.value.message
    with pytest.raises(openai.BadRequestError, match="file inputs are not currently supported"):
        sdk.responses.create(model=MODEL, input=[{"role": "user", "content": [
            {"type": "input_file", "file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}]}])
    with pytest.raises(openai.BadRequestError, match="does not support images"):
        sdk.responses.create(model=MODEL, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}]}])
    compressed = httpx.post(server.url + "/v1/responses", content=b"\x28\xb5\x2f\xfd",
                            headers={"content-type": "application/json", "content-encoding": "zstd"}, timeout=30)
    assert compressed.status_code == 415 and "zstd" in compressed.json()["error"]["message"]
