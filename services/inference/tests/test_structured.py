"""Grammars for ``format`` and forced tool calls: schema key order, compact calls, and a real model under them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral_common.errors import BadRequest
from corral_common.internal import ForcedCall
from corral_inference.structured import grammar_for
from corral_inference.testing import run

WEATHER = {"name": "get_weather", "parameters": {"type": "object", "required": ["city"], "properties": {
    "city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}}
TIME = {"name": "get_time", "parameters": {"type": "object", "required": ["timezone"],
                                           "properties": {"timezone": {"type": "string"}}}}
ZETA_ALPHA = {"type": "object", "required": ["zeta", "alpha"],
              "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}


def _rules(grammar: str) -> dict[str, str]:
    """A GBNF's rules by name."""
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def test_schema_keys_keep_the_schemas_order() -> None:
    root = _rules(grammar_for(ZETA_ALPHA))["root"]
    assert root.index("zeta-kv") < root.index("alpha-kv")
    alpha_first = {**ZETA_ALPHA, "properties": dict(reversed(ZETA_ALPHA["properties"].items()))}
    flipped = _rules(grammar_for(alpha_first))["root"]
    assert flipped.index("alpha-kv") < flipped.index("zeta-kv")


def test_format_grammars_keep_their_optional_space() -> None:
    assert _rules(grammar_for(ZETA_ALPHA))["space"] != '""'


def test_one_forced_function_leaves_only_its_compact_arguments() -> None:
    rules = _rules(grammar_for(None, ForcedCall(functions=[WEATHER])))
    assert rules["root"] == '( arguments-0 ) "}"'  # the name is in the prompt's prefix, never sampled
    assert rules["space"] == '""'
    assert rules["arguments-0"].index("city-kv") < rules["arguments-0"].index("unit-kv")


def test_any_of_several_functions_is_a_constant_name_then_its_arguments() -> None:
    root = _rules(grammar_for(None, ForcedCall(functions=[WEATHER, TIME])))["root"]
    assert root == ('( "\\"get_weather\\",\\"arguments\\":" arguments-0 | '
                    '"\\"get_time\\",\\"arguments\\":" arguments-1 ) "}"')


def test_functions_without_parameters_take_any_object() -> None:
    rules = _rules(grammar_for(None, ForcedCall.model_validate({"functions": [{"name": "ping"}]})))
    assert rules["root"] == '( arguments-0 ) "}"' and "object" in rules["arguments-0"]


def test_no_format_and_no_forced_call_is_no_grammar() -> None:
    assert grammar_for(None) is None and grammar_for("") is None


@pytest.mark.parametrize("parameters, message", [
    ({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}, "invalid tool parameters"),
    ({"type": "object", "properties": {"a": json.loads("[" * 40 + "]" * 40)}}, "too large or too deeply"),
])
def test_bad_tool_parameters_are_a_400(parameters: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        grammar_for(None, ForcedCall.model_validate({"functions": [{"name": "f", "parameters": parameters}]}))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": ["x", 1]}},
    {"type": "object", "properties": ["a"]},
    {"type": "object", "properties": {"a": "string"}},
    {"type": "object", "properties": {"a": 3}},
    {"type": "array", "items": True},
])
def test_a_format_schema_of_the_wrong_shape_is_a_400_naming_format(schema: dict) -> None:
    """Found by the fuzz test: a property schema that is not an object crashed the converter (a bare 500)."""
    with pytest.raises(BadRequest, match="invalid format"):
        grammar_for(schema)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path):
    batch = pytest.importorskip("corral_inference.batch_engine")
    from corral_inference.engine import LoadSpec

    engine = batch.BatchEngine(LoadSpec(model_path=str(smollm2_path), num_ctx=512, num_thread=2), 1)
    yield engine
    engine.close()


def _ask(question: str, tools: list[dict] = ()) -> str:
    """A ChatML prompt for smollm2, with the tools in its system message as a tools template puts them."""
    system = f"<|im_start|>system\nYou may call these functions:\n{json.dumps(tools)}<|im_end|>\n" if tools else ""
    return f"{system}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def test_a_forced_call_on_smollm2_ends_in_a_few_tokens(engine) -> None:
    call = ForcedCall(functions=[WEATHER])
    out = run(engine, _ask("What is the weather in Paris?") + call.prefix(), temperature=0, num_predict=32,
              grammar=grammar_for(None, call))
    parsed = json.loads(call.prefix() + out.text)
    assert parsed["name"] == "get_weather" and isinstance(parsed["arguments"]["city"], str)
    assert out.final.done_reason == "stop" and out.final.eval_count <= 16


def test_required_on_smollm2_calls_one_of_the_functions(engine) -> None:
    call = ForcedCall(functions=[WEATHER, TIME])
    out = run(engine, _ask("What time is it in Tokyo?", [WEATHER, TIME]) + call.prefix(), temperature=0, num_predict=32,
              grammar=grammar_for(None, call))
    parsed = json.loads(call.prefix() + out.text)
    assert parsed["name"] in ("get_weather", "get_time") and isinstance(parsed["arguments"], dict)
    assert out.final.done_reason == "stop"


def test_a_format_schema_on_smollm2_writes_zeta_first(engine) -> None:
    out = run(engine, _ask("Give me a word and a number as JSON."), temperature=0, num_predict=16,
              grammar=grammar_for(ZETA_ALPHA))
    assert out.text.replace(" ", "").startswith('{"zeta":')
