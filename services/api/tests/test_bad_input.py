"""Issue 18 item 8 (input validation): bodies that used to be bare 500s are 400s naming the problem, on the native
and the /v1 routes: JSON nested too deeply to decode, a lone UTF-16 surrogate, NaN or Infinity, a number too large
for a float (1e999), absurd keep_alive."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from corral_common.durations import InvalidDuration, parse_keep_alive

from corral_api.testing import gateway, model

ROUTES = ["/api/generate", "/api/chat", "/api/show", "/v1/chat/completions", "/v1/completions", "/v1/responses"]


@pytest.fixture
def client() -> TestClient:
    """The gateway with fakes, answering 500s instead of raising them (so a 500 fails the assertion)."""
    app = gateway(model()).app
    app.state.websearch = None  # /api/index checks its JSON before it calls the websearch service
    return TestClient(app, base_url="http://127.0.0.1:11434", raise_server_exceptions=False)


def _message(response) -> str:  # noqa: ANN001
    error = response.json()["error"]
    return error["message"] if isinstance(error, dict) else error


@pytest.mark.parametrize("path", [*ROUTES, "/api/index"])
def test_input_validation_deeply_nested_json_is_a_400(client: TestClient, path: str) -> None:
    response = client.post(path, content=b"[" * 100_000)
    assert response.status_code == 400
    assert _message(response) == "invalid JSON in request body: nested too deeply (more than 100 levels)"


@pytest.mark.parametrize("path", ROUTES)
def test_input_validation_a_lone_surrogate_is_a_400_naming_it(client: TestClient, path: str) -> None:
    body = (b'{"model": "m", "prompt": "\\ud800", "input": "\\ud800", "stream": false,'
            b' "messages": [{"role": "user", "content": "\\ud800"}]}')
    response = client.post(path, content=body)
    assert response.status_code == 400
    assert _message(response) == "invalid JSON in request body: lone surrogate \\ud800 in a string (not valid Unicode)"


def test_input_validation_a_surrogate_pair_is_one_character(client: TestClient) -> None:
    response = client.post("/api/generate", content=b'{"model": "m", "prompt": "\\ud83d\\ude00", "stream": false}')
    assert response.status_code == 200


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_input_validation_nan_and_infinity_are_not_json(client: TestClient, constant: str) -> None:
    response = client.post("/api/generate", content=f'{{"model": "m", "keep_alive": {constant}}}'.encode())
    assert response.status_code == 400
    assert _message(response) == f"invalid JSON in request body: {constant} is not a JSON value"


@pytest.mark.parametrize("path", [*ROUTES, "/api/index"])
def test_input_validation_a_number_too_large_for_a_float_is_a_400(client: TestClient, path: str) -> None:
    body = (b'{"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "x"}], "stream": false,'
            b' "url": "https://example.com/", "options": {"num_predict": 1e999}, "temperature": -1E400}')
    response = client.post(path, content=body)
    assert response.status_code == 400
    assert _message(response) == "invalid JSON in request body: number 1e999 is out of range"


@pytest.mark.parametrize("keep_alive", ["-1e308", "1e308", "1e20", "1" + "0" * 400])
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_input_validation_an_absurd_keep_alive_is_a_400(client: TestClient, path: str, keep_alive: str) -> None:
    body = ('{"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "x"}], "stream": false,'
            f' "keep_alive": {keep_alive}}}')
    response = client.post(path, content=body.encode())
    assert response.status_code == 400
    assert "is out of range: at most 9223372036 seconds" in _message(response)


def test_input_validation_keep_alive_keeps_its_meanings_within_range() -> None:
    assert parse_keep_alive(-1) == parse_keep_alive(-1.5) == parse_keep_alive("-1h") == 2**63 - 1
    assert parse_keep_alive(9_223_372_036) == 9_223_372_036 * 10**9
    with pytest.raises(InvalidDuration, match='time: invalid duration "99999999999999999999h"'):
        parse_keep_alive("99999999999999999999h")


@pytest.mark.parametrize("path", ROUTES)
def test_input_validation_json_deeper_than_100_levels_is_a_400_even_where_it_decodes(client: TestClient,
                                                                                     path: str) -> None:
    deep = "[" * 150 + "]" * 150  # Python decodes it; the code that walks it afterwards recursed out (a 500)
    body = ('{"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "x"}], "stream": false,'
            f' "input": "x", "format": {deep}}}')
    response = client.post(path, content=body.encode())
    assert response.status_code == 400
    assert _message(response) == "invalid JSON in request body: nested too deeply (more than 100 levels)"


def test_input_validation_100_levels_of_json_are_accepted(client: TestClient) -> None:
    deep = "[" * 99 + "]" * 99  # inside the body's own object: 100 levels
    response = client.post("/api/generate", content=f'{{"model": "m", "prompt": "x", "stream": false, "x": {deep}}}'
                           .encode())
    assert response.status_code == 200


@pytest.mark.parametrize("item, message", [
    ({"type": "message", "role": {"a": 1}, "content": "x"},
     "Invalid type for 'input[0].role': expected a string, but got an object instead."),
    ({"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}},
     "Invalid type for 'input[0].arguments': expected a string, but got an object instead."),
    ({"type": "reasoning", "encrypted_content": 5}, "Invalid type for 'input[0].encrypted_content': expected a "
                                                    "string, but got a number instead."),
    ({"type": ["message"], "role": "user", "content": "x"}, "input[0]: unknown input item type: \"['message']\""),
])
def test_input_validation_a_responses_item_field_of_the_wrong_type_is_a_400(client: TestClient, item: dict,
                                                                            message: str) -> None:
    response = client.post("/v1/responses", json={"model": "m", "input": [item, {"role": "user", "content": "x"}]})
    assert response.status_code == 400 and _message(response) == message


@pytest.mark.parametrize("blocks, message", [
    ([{"type": "tool_use", "id": ["t1"], "name": "f", "input": {}}], "tool_use block 'id' must be a string"),
    ([{"type": "tool_use", "id": "t1", "name": {"n": 1}, "input": {}}], "tool_use block 'name' must be a string"),
    ([{"type": "tool_result", "tool_use_id": {"a": 1}, "content": "2"}],
     "tool_result block 'tool_use_id' must be a string"),
])
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_input_validation_an_anthropic_block_id_of_the_wrong_type_is_a_400(client: TestClient, path: str,
                                                                           blocks: list, message: str) -> None:
    body = {"model": "m", "max_tokens": 2, "messages": [{"role": "assistant", "content": blocks},
                                                        {"role": "user", "content": "x"}]}
    response = client.post(path, json=body)
    assert response.status_code == 400 and _message(response) == message


def test_input_validation_an_anthropic_tool_choice_type_of_the_wrong_type_is_a_400(client: TestClient) -> None:
    response = client.post("/v1/messages", json={"model": "m", "max_tokens": 2, "tool_choice": {"type": ["auto"]},
                                                 "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert _message(response) == ("invalid tool_choice type \"['auto']\" "
                                  '(must be "auto", "any", "tool" or "none")')


@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_input_validation_an_integer_too_large_for_a_float_option_is_a_400(client: TestClient, path: str) -> None:
    body = ('{"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "x"}], "stream": false,'
            ' "options": {"temperature": 1' + "0" * 400 + "}}")
    response = client.post(path, content=body.encode())
    assert response.status_code == 400 and _message(response) == 'option "temperature" is out of range for a float32'
