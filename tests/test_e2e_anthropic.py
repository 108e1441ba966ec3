"""The official anthropic SDK against a real corral running smollm2:135m (the Messages API, count_tokens, errors,
and x-api-key auth)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import anthropic
import httpx
import pytest

from serverproc import Server, start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
# anthropic 2.x takes no sampling arguments of its own; Claude Code and older SDKs send them in the body.
ZERO = {"extra_body": {"temperature": 0}}
GREEDY = {**ZERO, "max_tokens": 16}
WEATHER = [{"name": "get_weather", "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
PNG = base64.b64encode(bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                                     "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


@pytest.fixture
def sdk(server) -> anthropic.Anthropic:
    """The official Anthropic client pointed at the session server, as ANTHROPIC_BASE_URL would."""
    return anthropic.Anthropic(base_url=server.url, api_key="corral", max_retries=0)


def test_message_with_system_and_turns_has_text_and_usage(sdk: anthropic.Anthropic) -> None:
    result = sdk.messages.create(model=MODEL, system="Answer briefly.", messages=[
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": [{"type": "text", "text": "Name three colors."}]}], **GREEDY)
    assert result.type == "message" and result.role == "assistant" and result.id.startswith("msg_")
    assert result.model == MODEL and result.content[0].type == "text" and result.content[0].text.strip()
    assert result.stop_reason in ("end_turn", "max_tokens")
    assert result.usage.input_tokens > 0 and 0 < result.usage.output_tokens <= 16


def test_max_tokens_cut_is_stop_reason_max_tokens(sdk: anthropic.Anthropic) -> None:
    result = sdk.messages.create(model=MODEL, messages=[{"role": "user", "content": "Count to fifty in words."}],
                                 **ZERO, max_tokens=3)
    assert result.stop_reason == "max_tokens" and result.usage.output_tokens == 3


def test_stream_events_come_in_anthropics_order_and_add_up(sdk: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "Name three colors."}]
    events = list(sdk.messages.create(model=MODEL, messages=ask, stream=True, **GREEDY))
    kinds = [e.type for e in events]  # the SDK drops ping events itself
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    streamed = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert streamed and events[-2].usage.output_tokens > 0
    with sdk.messages.stream(model=MODEL, messages=ask, **GREEDY) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == streamed
    assert sdk.messages.create(model=MODEL, messages=ask, **GREEDY).content[0].text == streamed


def test_raw_stream_is_named_events_with_a_ping_after_message_start(server) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 4}
    response = httpx.post(server.url + "/v1/messages", json=body, timeout=120)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    names = [block.split("\n", 1)[0] for block in response.text.split("\n\n") if block]
    assert names[:3] == ["event: message_start", "event: ping", "event: content_block_start"]
    assert names[-2:] == ["event: message_delta", "event: message_stop"]


def test_forced_tool_use_then_tool_result_gets_text(sdk: anthropic.Anthropic) -> None:
    first = sdk.messages.create(model=MODEL, messages=ASK_WEATHER, tools=WEATHER, **ZERO, max_tokens=64,
                                tool_choice={"type": "tool", "name": "get_weather"})
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict) and use.id
    # smollm2 cannot choose tools on its own ("does not support tools"), so the follow-up says tool_choice none
    history = [*ASK_WEATHER, {"role": "assistant", "content": [use.model_dump()]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 C"}]}]
    second = sdk.messages.create(model=MODEL, messages=history, tools=WEATHER, tool_choice={"type": "none"},
                                 max_tokens=24, **ZERO)
    assert second.content and second.content[0].type == "text" and second.content[0].text.strip()


def test_forced_tool_use_streams_as_input_json(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(model=MODEL, messages=ASK_WEATHER, tools=WEATHER, **ZERO, max_tokens=64,
                             tool_choice={"type": "any"}) as stream:
        final = stream.get_final_message()
    use = next(block for block in final.content if block.type == "tool_use")
    assert final.stop_reason == "tool_use" and use.name == "get_weather" and isinstance(use.input, dict)


def test_image_on_a_model_without_vision_is_a_bad_request(sdk: anthropic.Anthropic) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    with pytest.raises(anthropic.BadRequestError, match="does not support images") as caught:
        sdk.messages.create(model=MODEL, messages=[{"role": "user", "content": [image]}], **GREEDY)
    assert caught.value.body == {"type": "error", "error": {"type": "invalid_request_error",
                                                            "message": caught.value.body["error"]["message"]}}


def test_unknown_model_is_not_found(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError, match="model 'no-such-model' not found"):
        sdk.messages.create(model="no-such-model", messages=ASK_WEATHER, **GREEDY)
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="no-such-model", messages=ASK_WEATHER, stream=True, **GREEDY)


def test_missing_max_tokens_is_a_bad_request(server) -> None:
    answer = httpx.post(server.url + "/v1/messages", json={"model": MODEL, "messages": ASK_WEATHER}, timeout=30)
    assert answer.status_code == 400 and answer.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens is required and must be positive"}}


def test_count_tokens_grows_with_the_input(sdk: anthropic.Anthropic) -> None:
    short = sdk.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    longer = sdk.messages.count_tokens(model=MODEL, system="You are a helpful assistant.", messages=[
        {"role": "user", "content": "Hi there, please tell me about the weather in Paris today."}])
    with_tools = sdk.messages.count_tokens(model=MODEL, tools=WEATHER, messages=[{"role": "user", "content": "Hi"}])
    assert 0 < short.input_tokens < longer.input_tokens and with_tools.input_tokens >= short.input_tokens


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A corral that requires a key from every client (loopback too), with its admin key in env."""
    srv = start_server(tmp_path_factory.mktemp("anthropic-auth"), {"CORRAL_AUTH_REQUIRED": "1"}, ready_status=401)
    try:
        result = srv.corral("admin", "bootstrap")
        assert result.returncode == 0, result.stderr
        srv.env["CORRAL_TEST_ADMIN_KEY"] = result.stdout.strip().splitlines()[-1]
        yield srv
    finally:
        stop_server(srv.process)


def test_x_api_key_is_accepted_and_a_bad_key_is_an_authentication_error(guarded) -> None:
    key = guarded.env["CORRAL_TEST_ADMIN_KEY"]
    ask = {"model": "no-such-model", "messages": ASK_WEATHER}
    with pytest.raises(anthropic.NotFoundError):  # past the gate: the key (sent as x-api-key) was accepted
        anthropic.Anthropic(base_url=guarded.url, api_key=key, max_retries=0).messages.count_tokens(**ask)
    with pytest.raises(anthropic.NotFoundError):  # ANTHROPIC_AUTH_TOKEN: Authorization: Bearer
        anthropic.Anthropic(base_url=guarded.url, auth_token=key, max_retries=0).messages.count_tokens(**ask)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=guarded.url, api_key="olk_wrong", max_retries=0).messages.create(
            max_tokens=8, **ask)
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
