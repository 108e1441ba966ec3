"""``format`` ("json" or a JSON schema) and forced tool calls, compiled to llama.cpp grammars that constrain sampling.

JSON-schema keys keep the schema's order (the converter puts required keys before optional ones, as llama.cpp
does for Ollama). A forced call is written compactly, with no whitespace between tokens, so it ends in a few.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from corral_common.errors import BadRequest
from corral_common.internal import ForcedCall
from corral_common.schemabounds import checked_schema_text

_SPACE_RULE = re.compile(r"^space ::= .*$", re.M)
_COMPILE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError, RecursionError)


def _converter() -> Any:
    """llama.cpp's JSON-schema converter, with no remote references and JSON's own string rules."""
    from llama_cpp.llama_grammar import SchemaConverter

    return SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _literal(text: str) -> str:
    """A GBNF string literal that matches ``text`` exactly."""
    return json.dumps(text)


@lru_cache(maxsize=64)
def _schema_grammar(schema_text: str) -> str:
    """GBNF for a JSON schema (llama.cpp's converter), cached per schema."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_text)


@lru_cache(maxsize=64)
def _call_grammar(call_text: str) -> str:
    """GBNF for what follows a forced call's ``prefix()``: the name when several functions may be called, then
    that function's arguments and the closing brace, all without whitespace."""
    call = ForcedCall.model_validate_json(call_text)
    converter, many, alternatives = _converter(), len(call.functions) > 1, []
    for i, function in enumerate(call.functions):
        schema = converter.resolve_refs(function.parameters or {"type": "object"}, f"tool-{i}")
        arguments = converter.visit(schema, f"arguments-{i}")
        name = _literal(json.dumps(function.name) + ',"arguments":') + " " if many else ""
        alternatives.append(name + arguments)
    root = f'( {" | ".join(alternatives)} ) "}}"'
    return f"root ::= {root}\n" + _SPACE_RULE.sub('space ::= ""', converter.format_grammar())


def _json_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


def format_grammar(value: Any) -> str | None:
    """The grammar for a request's ``format``; a 400 that names the problem when it cannot be built."""
    if value in (None, "", "null"):
        return None
    if value == "json":
        return _json_grammar()
    if not isinstance(value, dict):
        raise BadRequest(f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object')
    text = checked_schema_text(value, "format")
    try:
        return _schema_grammar(text)
    except _COMPILE_ERRORS as exc:
        raise BadRequest(f"invalid format: cannot compile the JSON schema: {exc}") from None


def call_grammar(call: ForcedCall) -> str:
    """The grammar for a forced tool call's output; a 400 when a function's parameters cannot be compiled."""
    text = checked_schema_text(call.model_dump(), "tool parameters")
    try:
        return _call_grammar(text)
    except _COMPILE_ERRORS as exc:
        raise BadRequest(f"invalid tool parameters: cannot compile the JSON schema: {exc}") from None


def grammar_for(value: Any, forced_call: ForcedCall | None = None) -> str | None:
    """The grammar for a completion: its forced tool call if it has one, else its ``format``."""
    return call_grammar(forced_call) if forced_call else format_grammar(value)
