"""Bounds on what a JSON schema (``format``, forced tool parameters) may ask of a grammar, checked before any
grammar is built: by the gateway before a request goes to inference, and by inference before it compiles.

Size and depth bound the schema's text; the repetition keywords bound its meaning. llama.cpp's converter
(``llama_cpp.llama_grammar``) writes every bounded repetition out in full: ``minItems: 10**9`` is a list of
a billion rule references before anything can refuse it (issue 18: 21 GB). Each repetition is written once,
in the rule of the schema node that asks for it, and nested schemas are separate rules referred to by name, so
the grammar grows with the *sum* of the counts (weighted by the rule names written), not their product.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from corral_common.errors import BadRequest

MAX_SCHEMA_BYTES = 64 << 10
MAX_SCHEMA_DEPTH = 32
# llama.cpp's grammar parser refuses an optional repetition whose nested groups add up to 2000 rules
# (MAX_REPETITION_THRESHOLD in llama-grammar.cpp), and a sampler it could not build crashes the process:
# maxLength 2000 already does. Half of that leaves room for the groups around the repetition.
MAX_REPEAT = 1000
MAX_GRAMMAR_BYTES = 1 << 20
REPEAT_KEYWORDS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_ITEM_OVERHEAD = 16  # '"," space ' and the optional group's brackets around each written item
_CHAR_ITEM = 8  # a string's repeated item is the shared ``char`` rule


class SchemaTooLarge(BadRequest):
    """A JSON schema whose grammar would be too large to build; the message names what to lower."""


def _pointer(path: tuple[str, ...]) -> str:
    """A JSON pointer fragment (``#/properties/xs``) for error messages."""
    return "#" + "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _count(value: Any) -> float:
    """A repetition keyword's value as a number (anything that is not a number asks for nothing here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if not math.isnan(value) else 0.0


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of a JSON value (bounded walk: stops counting past the limit)."""
    if level > MAX_SCHEMA_DEPTH:
        return level
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return max((_depth(child, level + 1) for child in children), default=level)


def _nodes(schema: Any) -> Iterator[tuple[dict[str, Any], tuple[str, ...], int]]:
    """Every object in the schema with its path and the length of the rule name the converter gives it."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(schema, (), 4)]
    while stack:
        node, path, name = stack.pop()
        if isinstance(node, dict):
            yield node, path, name
            stack.extend((child, (*path, str(key)), name + 1 + len(str(key))) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend((child, (*path, str(i)), name + 8) for i, child in enumerate(node))


def _too_many(what: str, keyword: str, value: Any, path: tuple[str, ...]) -> SchemaTooLarge:
    return SchemaTooLarge(f"invalid {what}: {keyword} is {json.dumps(value)} at {_pointer(path)}, over the limit "
                          f"of {MAX_REPEAT} repetitions a grammar may hold; ask for fewer")


def _pattern_cost(pattern: Any, what: str, path: tuple[str, ...], name: int) -> float:
    """Grammar bytes a ``pattern``'s ``{n,m}`` quantifiers write out; a 400 for one over the limit."""
    if not isinstance(pattern, str):
        return 0.0
    cost = 0.0
    for match in _QUANTIFIER.finditer(pattern):
        times = max(int(match.group(1)), int(match.group(2) or 0))
        if times > MAX_REPEAT:
            raise _too_many(what, f"the pattern quantifier {match.group(0)}", times, path)
        cost += times * (name + _ITEM_OVERHEAD)
    return cost


def _node_cost(node: dict[str, Any], what: str, path: tuple[str, ...], name: int) -> float:
    """Grammar bytes one schema object writes out for its repetitions; a 400 for a count over the limit."""
    counts = {key: _count(node.get(key)) for key in REPEAT_KEYWORDS}
    for key, value in counts.items():
        if value > MAX_REPEAT:
            raise _too_many(what, key, node[key], path)
    items = max(counts["minItems"], counts["maxItems"]) * (name + len("-item") + _ITEM_OVERHEAD)
    chars = max(counts["minLength"], counts["maxLength"]) * _CHAR_ITEM
    return items + chars + _pattern_cost(node.get("pattern"), what, path, name)


def check_schema_bounds(schema: Any, what: str = "format") -> None:
    """A 400 naming the keyword and the limit when a schema asks for more repetitions than a grammar may
    hold, or for a grammar over MAX_GRAMMAR_BYTES in all (the schema's size and depth are checked first)."""
    total = 0.0
    for node, path, name in _nodes(schema):
        total += _node_cost(node, what, path, name)
    if total > MAX_GRAMMAR_BYTES:
        raise SchemaTooLarge(f"invalid {what}: the JSON schema would compile to a grammar of about "
                             f"{math.ceil(total / 1024)} KiB, over the limit of {MAX_GRAMMAR_BYTES >> 10} KiB; "
                             f"lower its minItems, maxItems, minLength, maxLength or pattern counts")


def checked_schema_text(schema: Any, what: str = "format") -> str:
    """The order-preserving JSON text of a schema that passed every bound (size, depth, repetitions)."""
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_BYTES or _depth(schema) > MAX_SCHEMA_DEPTH:
        raise SchemaTooLarge(f"invalid {what}: the JSON schema is too large or too deeply nested")
    check_schema_bounds(schema, what)
    return text


def check_format(value: Any) -> None:
    """The bounds of a request's ``format`` when it is a schema (``"json"``, empty and other values are
    the engine's to judge, with Ollama's messages)."""
    if isinstance(value, dict):
        checked_schema_text(value, "format")
