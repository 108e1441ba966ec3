"""gpt-oss (harmony) output through the parser the gateway uses for it: recorded token streams, cut anywhere."""

from __future__ import annotations

import pytest

from corral_common.internal import ResolvedModel
from corral_api.harmony import HarmonyParser, is_harmony_model, parse_header

PROMPT = "<|start|>user<|message|>What is the weather in Paris?<|end|><|start|>assistant"

# Pieces as the engine sends them for gpt-oss (its framing tokens written out; <|return|> and <|call|> end
# generation, so they usually never arrive).
ANSWER = ["<|channel|>", "analysis", "<|message|>", "User", " asks", " simple", " math", ".", "<|end|>",
          "<|start|>", "assistant", "<|channel|>", "final", "<|message|>", "2", " +", " 2", " =", " 4", "."]
CALL = ["<|channel|>", "analysis", "<|message|>", "Need", " the", " weather", " tool", ".", "<|end|>",
        "<|start|>", "assistant", "<|channel|>", "commentary", " to", "=", "functions", ".get", "_weather", " ",
        "<|constrain|>", "json", "<|message|>", '{"', "city", '":"', "Paris", '"}']
CALL_RECIPIENT_FIRST = ["<|channel|>", "analysis", "<|message|>", "Tool", ".", "<|end|>", "<|start|>", "assistant",
                        " to", "=", "functions", ".get", "_weather", "<|channel|>", "commentary", " json",
                        "<|message|>", '{"city": "Tokyo", "days": 2}', "<|call|>"]
WITH_RETURN = ["<|channel|>", "final", "<|message|>", "Hi", " there", "<|return|>"]
PREAMBLE_THEN_CALL = ["<|channel|>", "commentary", "<|message|>", "Checking", " now", ".", "<|end|>", "<|start|>",
                      "assistant", "<|channel|>", "commentary", " to", "=", "functions", ".get", "_weather",
                      "<|message|>", "{}"]


def _run(pieces: list[str], prompt: str = PROMPT, keep_thinking: bool = True) -> tuple[str, str, list]:
    parser = HarmonyParser(prompt, keep_thinking)
    thinking = content = ""
    for piece in pieces:
        t, c = parser.feed(piece)
        thinking, content = thinking + t, content + c
    t, c, calls = parser.finish()
    return thinking + t, content + c, [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


@pytest.mark.parametrize("pieces, expected", [
    (ANSWER, ("User asks simple math.", "2 + 2 = 4.", [])),
    (CALL, ("Need the weather tool.", "", [("get_weather", {"city": "Paris"})])),
    (CALL_RECIPIENT_FIRST, ("Tool.", "", [("get_weather", {"city": "Tokyo", "days": 2})])),
    (WITH_RETURN, ("", "Hi there", [])),
    (PREAMBLE_THEN_CALL, ("", "Checking now.", [("get_weather", {})])),
])
def test_recorded_streams_split_into_thinking_content_and_calls(pieces: list[str], expected: tuple) -> None:
    assert _run(pieces) == expected


@pytest.mark.parametrize("pieces", [ANSWER, CALL, CALL_RECIPIENT_FIRST, WITH_RETURN, PREAMBLE_THEN_CALL])
def test_any_chunking_gives_the_same_split(pieces: list[str]) -> None:
    text, whole = "".join(pieces), _run(pieces)
    assert _run(list(text)) == whole  # one character at a time: every tag arrives in pieces
    for cut in range(1, len(text)):
        for second in (cut + 3, cut + 11):
            assert _run([text[:cut], text[cut:second], text[second:]]) == whole, (cut, second)


def test_thinking_and_content_stream_as_they_come() -> None:
    parser = HarmonyParser(PROMPT)
    assert parser.feed("<|channel|>analysis<|message|>Let me") == ("Let me", "")
    assert parser.feed(" think<|e") == (" think", "")  # a possible end tag is held back
    assert parser.feed("nd|><|start|>assistant<|channel|>final<|message|>Sure") == ("", "Sure")
    assert parser.finish() == ("", "", [])


def test_a_prompt_that_opened_the_analysis_channel_starts_in_it() -> None:
    prompt = PROMPT + "<|channel|>analysis<|message|>"
    assert _run(["Think", "ing", "<|end|>", "<|start|>assistant<|channel|>final<|message|>", "Done"], prompt) == (
        "Thinking", "Done", [])
    no_start = "<|im_start|>assistant\n<|channel|>analysis<|message|>"  # a template that opens a channel itself
    assert _run(["All of it is thought"], no_start) == ("All of it is thought", "", [])


def test_think_false_drops_the_analysis() -> None:
    assert _run(ANSWER, keep_thinking=False) == ("", "2 + 2 = 4.", [])


def test_text_outside_harmony_is_content_never_lost() -> None:
    assert _run(["Just", " plain", " words"]) == ("", "Just plain words", [])
    assert _run(["<|channel|>final<|message|>A", "<|end|>", "\n", "and more"]) == ("", "A\nand more", [])


def test_a_call_whose_body_is_not_json_comes_back_as_content() -> None:
    pieces = ["<|channel|>commentary to=functions.f <|constrain|>json<|message|>", "{not json"]
    assert _run(pieces) == ("", "{not json", [])


@pytest.mark.parametrize("raw, expected", [
    ("assistant<|channel|>final", ("assistant", "final", "")),
    ("assistant<|channel|>commentary to=functions.get_weather <|constrain|>json", ("assistant", "commentary",
                                                                                   "functions.get_weather")),
    ("assistant to=functions.x<|channel|>commentary json", ("assistant", "commentary", "functions.x")),
    ("assistant<|channel|>final<|constrain|>json", ("assistant", "final", "")),
    ("to=functions.x<|channel|>analysis", ("tool", "analysis", "functions.x")),
])
def test_headers(raw: str, expected: tuple[str, str, str]) -> None:
    header = parse_header(raw)
    assert (header.role, header.channel, header.recipient) == expected


def _model(**fields) -> ResolvedModel:
    return ResolvedModel(name="m", short="m", manifest_digest="", model_digest="", **fields)


def test_the_parser_is_chosen_by_architecture_or_template() -> None:
    assert is_harmony_model(_model(details={"family": "gpt-oss"}))
    assert is_harmony_model(_model(template="{{ .Prompt }}<|start|>assistant<|channel|>final<|message|>"))
    assert is_harmony_model(_model(chat_template="{{ '<|channel|>analysis<|message|>' }}"))
    assert not is_harmony_model(_model(template="<|im_start|>{{ .Prompt }}<think>", details={"family": "llama"}))
