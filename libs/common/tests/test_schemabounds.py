"""Bounds on what a JSON schema may ask of a grammar (issue 18 item 1; security.md LCP-3: grammar DoS)."""

from __future__ import annotations

import json
import re

import pytest

from corral_common.errors import BadRequest
from corral_common.schemabounds import (MAX_GRAMMAR_BYTES, MAX_REPEAT, SchemaTooLarge, check_format,
                                        check_schema_bounds, checked_schema_text)


def _array(**bounds: object) -> dict:
    return {"type": "array", "items": {"type": "integer"}, **bounds}


def test_lcp3_dos_a_billion_min_items_is_a_400_naming_keyword_place_and_limit() -> None:
    schema = {"type": "object", "properties": {"xs": _array(minItems=1_000_000_000)}}
    with pytest.raises(BadRequest) as refused:
        checked_schema_text(schema)
    assert refused.value.status == 400
    assert refused.value.message == ("invalid format: minItems is 1000000000 at #/properties/xs, over the limit of "
                                     f"{MAX_REPEAT} repetitions a grammar may hold; ask for fewer")


@pytest.mark.parametrize("node, keyword", [
    (_array(maxItems=MAX_REPEAT + 1), "maxItems"),
    ({"type": "string", "maxLength": 2000}, "maxLength"),  # llama.cpp's parser gives up there (and then crashed)
    ({"type": "string", "minLength": 1e400}, "minLength"),  # JSON's 1e400 is infinity
    ({"type": "object", "minProperties": 10**6}, "minProperties"),
    ({"type": "string", "pattern": "^[a-z]{3,5000}$"}, "the pattern quantifier {3,5000}"),
])
def test_lcp3_dos_every_repetition_keyword_is_bounded(node: dict, keyword: str) -> None:
    with pytest.raises(SchemaTooLarge, match=f"invalid tool parameters: {re.escape(keyword)} is .* at #/items, over the "
                                             f"limit of {MAX_REPEAT}"):
        check_schema_bounds(_array(items=node), "tool parameters")


def test_lcp3_dos_many_repetitions_under_the_limit_still_add_up_to_a_refusal() -> None:
    schema = {"type": "object", "properties": {f"p{i}": _array(maxItems=MAX_REPEAT) for i in range(60)}}
    with pytest.raises(SchemaTooLarge, match=f"grammar of about .* KiB, over the limit of {MAX_GRAMMAR_BYTES >> 10} "
                                             "KiB; lower its minItems"):
        checked_schema_text(schema)


def test_nested_repetitions_add_up_rather_than_multiply() -> None:
    """The converter names each nested schema's rule once, so 1000 lists of 1000 is two rules of 1000."""
    json_schema_to_gbnf = pytest.importorskip("llama_cpp.llama_grammar").json_schema_to_gbnf
    schema = _array(minItems=MAX_REPEAT, items=_array(minItems=MAX_REPEAT))
    checked_schema_text(schema)
    assert len(json_schema_to_gbnf(json.dumps(schema))) < 100_000


def test_ordinary_schemas_pass_and_keep_their_key_order() -> None:
    schema = {"type": "object", "properties": {"zeta": {"type": "string", "maxLength": 40, "pattern": "^[a-z]{1,9}$"},
                                               "alpha": _array(minItems=1, maxItems=10)},
              "required": ["zeta"]}
    assert checked_schema_text(schema) == json.dumps(schema)


def test_values_that_are_not_counts_are_left_to_the_compiler() -> None:
    check_schema_bounds({"type": "array", "minItems": "many", "maxItems": True, "maxLength": None})


def test_size_and_depth_are_still_checked() -> None:
    with pytest.raises(SchemaTooLarge, match="too large or too deeply nested"):
        checked_schema_text({"a": json.loads("[" * 40 + "]" * 40)})
    with pytest.raises(SchemaTooLarge, match="too large or too deeply nested"):
        checked_schema_text({"enum": ["x" * 1000] * 100})


def test_format_strings_are_not_schemas_here() -> None:
    for value in (None, "", "json", "xml", 3):
        check_format(value)
    with pytest.raises(SchemaTooLarge, match="invalid format: maxItems"):
        check_format(_array(maxItems=10**9))
