"""The official openai Python SDK against a real corral running real llama.cpp inference."""

from __future__ import annotations

import base64
import json
import math
import struct

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
GREEDY = {"temperature": 0, "seed": 42, "max_tokens": 24}
ASK = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    """The official OpenAI client pointed at the session server's /v1."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key="corral", max_retries=0)


def test_chat_not_streamed_returns_text_and_usage(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, messages=ASK, **GREEDY)
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == MODEL and result.system_fingerprint == "fp_ollama"
    choice = result.choices[0]
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 0 and 0 < result.usage.completion_tokens <= 24
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_chat_stream_adds_up_to_the_non_streamed_text(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=ASK, stream=True,
                                              stream_options={"include_usage": True}, **GREEDY))
    assert {c.id for c in chunks} == {chunks[0].id} and len({c.created for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason in ("stop", "length") and finish.choices[0].delta.content is None
    assert all(c.choices[0].finish_reason is None for c in chunks[:-2])
    assert usage.choices == [] and usage.usage.completion_tokens > 0 and usage.usage.prompt_tokens > 0
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = sdk.chat.completions.create(model=MODEL, messages=ASK, **GREEDY).choices[0].message.content
    assert streamed == whole


def test_chat_stream_without_usage_ends_with_the_finish_chunk(server) -> None:
    body = {"model": MODEL, "messages": ASK, "stream": True, **GREEDY}
    response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [e for e in response.text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    finish = json.loads(events[-2].removeprefix("data: "))
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert "usage" not in finish


def test_max_tokens_cuts_with_length(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, temperature=0, max_tokens=3,
                                         messages=[{"role": "user", "content": "Count from one to fifty in words."}])
    assert result.choices[0].finish_reason == "length" and result.usage.completion_tokens == 3


def test_json_object_response_format_is_accepted(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Give me a JSON object."}],
                                         response_format={"type": "json_object"}, **GREEDY)
    assert result.choices[0].finish_reason in ("stop", "length")


def test_completions_not_streamed_and_streamed(sdk: openai.OpenAI) -> None:
    result = sdk.completions.create(model=MODEL, prompt="The sky is", **GREEDY)
    assert result.object == "text_completion" and result.id.startswith("cmpl-")
    assert result.choices[0].text and result.choices[0].finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    chunks = list(sdk.completions.create(model=MODEL, prompt="The sky is", stream=True,
                                         stream_options={"include_usage": True}, **GREEDY))
    assert all(c.usage.total_tokens == 0 for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == result.usage.completion_tokens
    assert "".join(c.choices[0].text for c in chunks[:-1]) == result.choices[0].text
    assert chunks[-2].choices[0].finish_reason == result.choices[0].finish_reason


def test_completions_echo_prepends_the_prompt(sdk: openai.OpenAI) -> None:
    result = sdk.completions.create(model=MODEL, prompt="The sky is", echo=True, **GREEDY)
    assert result.choices[0].text.startswith("The sky is") and len(result.choices[0].text) > len("The sky is")


def test_models_list_and_retrieve(sdk: openai.OpenAI) -> None:
    listed = {m.id: m for m in sdk.models.list()}
    assert MODEL in listed
    entry = listed[MODEL]
    assert entry.object == "model" and entry.owned_by == "library" and entry.created > 1_600_000_000
    retrieved = sdk.models.retrieve(MODEL)
    assert (retrieved.id, retrieved.created, retrieved.owned_by) == (MODEL, entry.created, "library")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("no-such-model:latest")
    assert caught.value.status_code == 404 and caught.value.body["type"] == "not_found_error"


def _unit(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_embeddings_float_and_base64_agree(sdk: openai.OpenAI) -> None:
    texts = ["The sky is blue.", "Grass is green."]
    floats = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1] and floats.usage.prompt_tokens > 0
    encoded = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
    for plain, packed in zip(floats.data, encoded.data):
        raw = base64.b64decode(packed.embedding)
        decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
        assert len(decoded) == len(plain.embedding) == 576
        assert max(abs(a - b) for a, b in zip(decoded, plain.embedding)) < 1e-6
        assert abs(_unit(plain.embedding) - 1.0) < 1e-3


def test_embeddings_dimensions_cut_and_renormalise(sdk: openai.OpenAI) -> None:
    result = sdk.embeddings.create(model=MODEL, input="The sky is blue.", dimensions=64, encoding_format="float")
    vector = result.data[0].embedding
    assert len(vector) == 64 and abs(_unit(vector) - 1.0) < 1e-3


def test_invalid_requests_raise_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=[])
    assert caught.value.body == {"message": "[] is too short - 'messages'", "type": "invalid_request_error",
                                 "param": None, "code": None}
    with pytest.raises(openai.BadRequestError, match="9 is greater than the maximum of 8 - 'n'"):
        sdk.chat.completions.create(model=MODEL, messages=ASK, n=9)
    with pytest.raises(openai.BadRequestError, match="image URLs are not currently supported"):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    with pytest.raises(openai.BadRequestError, match="token id 1000000 is not a cl100k_base token"):
        sdk.embeddings.create(model=MODEL, input=[1, 2, 1000000], encoding_format="float")


def test_unknown_model_raises_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="model 'no-such-model' not found"):
        sdk.chat.completions.create(model="no-such-model", messages=ASK, max_tokens=4)
    with pytest.raises(openai.NotFoundError):
        list(sdk.chat.completions.create(model="no-such-model", messages=ASK, max_tokens=4, stream=True))
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="no-such-model", prompt="hi", max_tokens=4)


def test_malformed_json_is_an_openai_error_and_native_errors_keep_their_shape(server) -> None:
    response = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    native = httpx.post(server.url + "/api/chat", json={"model": "no-such-model", "messages": ASK}, timeout=30)
    assert native.status_code == 404 and native.json() == {"error": "model 'no-such-model' not found"}


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_forced_tool_call_comes_back_as_openai_tool_calls(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=WEATHER, tool_choice="required",
                                         temperature=0, max_tokens=40)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments), dict)
    chunks = list(sdk.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=WEATHER, stream=True,
                                              tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                              temperature=0, max_tokens=40))
    streamed = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert [tc.function.name for tc in streamed] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_none_answers_in_text(sdk: openai.OpenAI) -> None:
    result = sdk.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=WEATHER, tool_choice="none",
                                         **GREEDY)
    assert result.choices[0].message.tool_calls is None and result.choices[0].message.content
