"""Tool-call parsing per family, forced calls, and the thinking splitter."""

from __future__ import annotations

import pytest

from corral_api.shaping import OutputShaper
from corral_api.thinking import ThinkingSplitter
from corral_api.toolcalls import ToolCallCollector, family_of, forced_call, parse_calls


def _stream(collector: ToolCallCollector, pieces: list[str]) -> tuple[str, list]:
    content = "".join(collector.feed(p) for p in pieces)
    rest, calls = collector.finish()
    return content + rest, calls


@pytest.mark.parametrize("family, text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]'),
    ("llama3", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("json", '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}'),
    ("json", '[{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]'),
])
def test_each_family_parses_to_ollamas_shape(family: str, text: str) -> None:
    content, calls = _stream(ToolCallCollector(family), [text[i:i + 3] for i in range(0, len(text), 3)])
    assert content == ""
    assert len(calls) == 1
    call = calls[0]
    assert call["id"].startswith("call_") and len(call["id"]) == 13
    assert call["function"] == {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}


def test_several_hermes_calls_get_indexes() -> None:
    text = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
            '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    calls = parse_calls(text, "hermes")
    assert [(c["function"]["index"], c["function"]["name"]) for c in calls] == [(0, "a"), (1, "b")]


def test_plain_text_streams_through_untouched() -> None:
    collector = ToolCallCollector("hermes")
    assert collector.feed("Hello") == "Hello"
    assert collector.feed(" there <") == " there "
    assert collector.feed("b>") == "<b>"
    assert collector.finish() == ("", [])


def test_text_before_a_call_is_content() -> None:
    content, calls = _stream(ToolCallCollector("hermes"),
                             ["Let me check.", "<tool_call>", '{"name": "f", "arguments": {}}', "</tool_call>"])
    assert content == "Let me check." and calls[0]["function"]["name"] == "f"


def test_json_that_is_not_a_call_is_released_as_content() -> None:
    content, calls = _stream(ToolCallCollector("json"), ['{"answer": 42}'])
    assert content == '{"answer": 42}' and calls == []
    content, calls = _stream(ToolCallCollector("hermes"), ["<tool_call>not json"])
    assert content == "<tool_call>not json" and calls == []


def test_forced_calls() -> None:
    tools = [{"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
             {"type": "function", "function": {"name": "b"}}]
    assert forced_call(tools, "auto") is None and forced_call(tools, None) is None
    required = forced_call(tools, "required")
    assert [f.name for f in required.functions] == ["a", "b"] and required.prefix() == '{"name":'
    named = forced_call(tools, {"type": "function", "function": {"name": "b"}})
    assert [f.name for f in named.functions] == ["b"] and named.prefix() == '{"name":"b","arguments":'
    with pytest.raises(ValueError, match="not among the tools"):
        forced_call(tools, {"type": "function", "function": {"name": "zzz"}})
    with pytest.raises(ValueError, match="at least one function"):
        forced_call([{"type": "web_search"}], "required")


def test_forced_collector_completes_the_prefilled_call() -> None:
    forced = forced_call([{"type": "function", "function": {"name": "get_weather"}}], "required")
    content, calls = _stream(ToolCallCollector.for_forced(forced), ['{"city":', '"Paris"}}'])
    assert content == "" and calls[0]["function"] == {"index": 0, "name": "get_weather",
                                                       "arguments": {"city": "Paris"}}
    content, calls = _stream(ToolCallCollector.for_forced(forced), ['{"city":"Par'])
    assert calls == [] and content == '{"name":"get_weather","arguments":{"city":"Par'


def test_family_detection() -> None:
    assert family_of("...<tool_call>...") == "hermes"
    assert family_of("[AVAILABLE_TOOLS] [TOOL_CALLS]") == "mistral"
    assert family_of("<|python_tag|>") == "llama3"
    assert family_of("{{ .Prompt }}") == "json"


def test_thinking_is_split_across_chunk_boundaries() -> None:
    splitter = ThinkingSplitter()
    pieces = ["<thi", "nk>Let me ", "think.</th", "ink>\n\nThe answer", " is 4."]
    thought = content = ""
    for piece in pieces:
        t, c = splitter.feed(piece)
        thought, content = thought + t, content + c
    t, c = splitter.finish()
    assert (thought + t, content + c) == ("Let me think.", "The answer is 4.")


def test_output_without_think_tags_is_all_content() -> None:
    splitter = ThinkingSplitter()
    assert splitter.feed("Hello") == ("", "Hello")


def test_shaper_drops_thinking_when_think_is_false_and_finds_calls_after_it() -> None:
    shaper = OutputShaper(ThinkingSplitter(), keep_thinking=False, tools=ToolCallCollector("hermes"))
    out = [shaper.feed(p) for p in ["<think>hmm</think>", '<tool_call>{"name": "f", "arguments": {}}</tool_call>']]
    thought, content, calls = shaper.finish()
    assert all(t == "" for t, _ in out) and thought == ""
    assert calls[0]["function"]["name"] == "f"
