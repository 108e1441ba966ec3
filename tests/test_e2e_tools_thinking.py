"""Tool calling and thinking on a real model: tools reach the template, forced calls are always valid, end in a
few tokens and come out as ``tool_calls`` on a model that thinks (openai SDK and raw /api/chat)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import ollama
import openai
import pytest

pytestmark = pytest.mark.e2e
TEMPLATE = (Path(__file__).parent / "data" / "chatml-tools.tmpl").read_text()
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "City name"}}}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current time in a timezone",
    "parameters": {"type": "object", "required": ["timezone"], "properties": {"timezone": {"type": "string"}}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture(scope="module")
def tool_model(server) -> str:
    client = ollama.Client(host=server.url)
    client.create(model="smol-tools", from_="smollm2:135m", template=TEMPLATE)
    return "smol-tools"


def _chat(server, **body) -> httpx.Response:
    body = {"stream": False, "options": {"temperature": 0, "num_predict": 64}, **body}
    return httpx.post(f"{server.url}/api/chat", json=body, timeout=120)


def test_template_with_tools_gives_capabilities(server, tool_model: str) -> None:
    caps = ollama.Client(host=server.url).show(tool_model).capabilities
    assert "tools" in caps and "thinking" in caps


def test_required_tool_choice_forces_a_valid_call(server, tool_model: str) -> None:
    result = _chat(server, model=tool_model, messages=ASK, tools=[WEATHER], tool_choice="required", think=False)
    assert result.status_code == 200, result.text
    calls = result.json()["message"]["tool_calls"]
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(calls[0]["function"]["arguments"]["city"], str)
    assert calls[0]["function"]["index"] == 0 and calls[0]["id"].startswith("call_")


def test_named_tool_choice_picks_that_tool(server, tool_model: str) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    result = _chat(server, model=tool_model, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice, think=False)
    call = result.json()["message"]["tool_calls"][0]["function"]
    assert call["name"] == "get_time" and isinstance(call["arguments"]["timezone"], str)


def test_streamed_forced_tool_call(server, tool_model: str) -> None:
    body = {"model": tool_model, "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "think": False,
            "options": {"temperature": 0, "num_predict": 64}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=120) as response:
        chunks = [json.loads(line) for line in response.iter_lines() if line]
    calls = [c for chunk in chunks for c in chunk["message"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert chunks[-1]["done"] is True


def test_tool_results_flow_back_and_auto_mode_answers(server, tool_model: str) -> None:
    client = ollama.Client(host=server.url)
    messages = ASK + [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "18 degrees and sunny", "tool_name": "get_weather"},
    ]
    result = client.chat(tool_model, messages=messages, tools=[WEATHER], think=False,
                         options={"temperature": 0, "num_predict": 40})
    assert result.message.content or result.message.tool_calls


def test_bad_tool_choice_is_a_400(server, tool_model: str) -> None:
    unknown = _chat(server, model=tool_model, messages=ASK, tools=[WEATHER],
                    tool_choice={"type": "function", "function": {"name": "nope"}})
    assert unknown.status_code == 400 and "not among the tools" in unknown.json()["error"]
    clash = _chat(server, model=tool_model, messages=ASK, tools=[WEATHER], tool_choice="required", format="json")
    assert clash.status_code == 400


def test_thinking_is_split_and_hidden_when_think_is_false(server, tool_model: str) -> None:
    thinking = _chat(server, model=tool_model, messages=[{"role": "user", "content": "What is 2+2?"}], think=True,
                     options={"temperature": 0, "num_predict": 12}).json()["message"]
    assert thinking.get("thinking")
    plain = _chat(server, model=tool_model, messages=[{"role": "user", "content": "What is 2+2?"}], think=False,
                  options={"temperature": 0, "num_predict": 12}).json()["message"]
    assert "thinking" not in plain and plain["content"]


def test_think_on_a_model_without_thinking_is_refused(server) -> None:
    response = _chat(server, model="smollm2:135m", messages=ASK, think=True)
    assert response.status_code == 400 and response.json()["error"] == '"smollm2:135m" does not support thinking'


def test_generate_splits_thinking_too(server, tool_model: str) -> None:
    body = {"model": tool_model, "prompt": "What is 2+2?", "stream": False, "think": True,
            "options": {"temperature": 0, "num_predict": 12}}
    result = httpx.post(f"{server.url}/api/generate", json=body, timeout=120).json()
    assert result["thinking"] and list(result)[:4] == ["model", "created_at", "response", "thinking"]
    hidden = httpx.post(f"{server.url}/api/generate", json={**body, "think": False}, timeout=120).json()
    assert "thinking" not in hidden and hidden["response"]


@pytest.fixture
def sdk(server) -> openai.OpenAI:
    """The official OpenAI client pointed at the session server's /v1."""
    return openai.OpenAI(base_url=server.url + "/v1", api_key="corral", max_retries=0)


def _only_call(choice) -> tuple[str, dict]:
    """The one tool call of a /v1 choice, its arguments parsed."""
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content and not getattr(choice.message, "reasoning", None)
    [call] = choice.message.tool_calls
    return call.function.name, json.loads(call.function.arguments)


@pytest.mark.parametrize("thinks", [False, True])
def test_a_named_call_fits_in_32_tokens(sdk: openai.OpenAI, tool_model: str, thinks: bool) -> None:
    result = sdk.chat.completions.create(model=tool_model if thinks else "smollm2:135m", messages=ASK,
                                         tools=[WEATHER, TIME], tool_choice=NAMED, max_tokens=32, temperature=0)
    name, arguments = _only_call(result.choices[0])
    assert name == "get_weather" and isinstance(arguments["city"], str)
    assert result.usage.completion_tokens <= 32


def test_required_calls_one_of_two_tools_on_a_thinking_model(sdk: openai.OpenAI, tool_model: str) -> None:
    result = sdk.chat.completions.create(model=tool_model, messages=ASK, tools=[WEATHER, TIME],
                                         tool_choice="required", max_tokens=48, temperature=0)
    name, arguments = _only_call(result.choices[0])
    assert (name, list(arguments)) in (("get_weather", ["city"]), ("get_time", ["timezone"]))


def test_required_streamed_over_v1_is_a_tool_call_not_reasoning(sdk: openai.OpenAI, tool_model: str) -> None:
    chunks = list(sdk.chat.completions.create(model=tool_model, messages=ASK, tools=[WEATHER], stream=True,
                                              tool_choice="required", max_tokens=32, temperature=0))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(getattr(d, "reasoning", None) for d in deltas)
    calls = [call for d in deltas for call in (d.tool_calls or [])]
    assert [c.function.name for c in calls] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_native_forced_call_with_think_unset_is_in_tool_calls(server, tool_model: str) -> None:
    result = _chat(server, model=tool_model, messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                   options={"temperature": 0, "num_predict": 32}).json()
    message = result["message"]
    assert result["done_reason"] == "stop" and "thinking" not in message and message["content"] == ""
    [call] = message["tool_calls"]
    assert call["function"]["name"] in ("get_weather", "get_time")
    assert isinstance(call["function"]["arguments"], dict)
