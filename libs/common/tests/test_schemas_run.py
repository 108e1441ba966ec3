"""Generate and chat requests share one set of run fields (options, think, truncate, logprobs)."""

from __future__ import annotations

import pytest

from corral_common.errors import BadRequest
from corral_common.schemas import ChatRequest, GenerateRequest, RunRequest, parse_body


@pytest.mark.parametrize("schema", [GenerateRequest, ChatRequest])
def test_run_fields_parse_the_same_on_both(schema: type[RunRequest]) -> None:
    req = parse_body(schema, b'{"model": "m", "options": {"seed": 1}, "think": "high", "truncate": false,'
                             b' "shift": true, "logprobs": true, "top_logprobs": 3}')
    assert (req.options, req.think, req.truncate, req.shift, req.logprobs, req.top_logprobs) == \
        ({"seed": 1}, "high", False, True, True, 3)


@pytest.mark.parametrize("schema", [GenerateRequest, ChatRequest])
def test_a_bad_run_field_names_the_request_schema(schema: type[RunRequest]) -> None:
    with pytest.raises(BadRequest, match=f"invalid value for field 'top_logprobs' in {schema.__name__}"):
        parse_body(schema, b'{"model": "m", "top_logprobs": "3"}')
