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
    assert _message(response) == "invalid JSON in request body: nested too deeply"


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
