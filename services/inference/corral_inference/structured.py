"""``format``: "json" or a JSON schema, compiled to a llama.cpp grammar that constrains sampling."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from corral_common.errors import BadRequest

MAX_SCHEMA_BYTES = 64 << 10
MAX_SCHEMA_DEPTH = 32


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of a JSON value (bounded walk: stops counting past the limit)."""
    if level > MAX_SCHEMA_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


@lru_cache(maxsize=64)
def _schema_grammar(schema_text: str) -> str:
    """GBNF for a JSON schema (llama.cpp's converter), cached per schema."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_text)


def _json_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


def grammar_for(value: Any) -> str | None:
    """The grammar for a request's ``format``; a 400 that names the problem when it cannot be built."""
    if value in (None, "", "null"):
        return None
    if value == "json":
        return _json_grammar()
    if not isinstance(value, dict):
        raise BadRequest(f'invalid format: {json.dumps(value)}; expected "json" or a valid JSON Schema object')
    text = json.dumps(value, sort_keys=True)
    if len(text) > MAX_SCHEMA_BYTES or _depth(value) > MAX_SCHEMA_DEPTH:
        raise BadRequest("invalid format: the JSON schema is too large or too deeply nested")
    try:
        return _schema_grammar(text)
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError) as exc:
        raise BadRequest(f"invalid format: cannot compile the JSON schema: {exc}") from None
