"""The gateway bounds a request before inference sees it (issue 18 items 1 and 11): a schema asking for more
repetitions than a grammar may hold is a 400, and a body over its route's cap is a 413 (security.md LCP-3,
OLL-7)."""

from __future__ import annotations

from corral_api.testing import FakeInference, gateway, model

BILLION = {"type": "array", "items": {"type": "integer"}, "minItems": 1_000_000_000}
REFUSAL = ("invalid format: minItems is 1000000000 at #, over the limit of 1000 repetitions a grammar may hold; "
           "ask for fewer")


def test_lcp3_dos_a_billion_min_items_is_refused_at_the_gateway() -> None:
    inference = FakeInference()
    body = {"model": "m", "prompt": "numbers", "format": BILLION, "stream": False}
    answer = gateway(model(), inference).post("/api/generate", json=body)
    assert answer.status_code == 400 and answer.json() == {"error": REFUSAL}
    assert inference.requests == []


def test_lcp3_dos_the_openai_layer_gets_the_same_refusal_in_its_own_shape() -> None:
    inference = FakeInference()
    body = {"model": "m", "messages": [{"role": "user", "content": "numbers"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": BILLION}}}
    answer = gateway(model(), inference).post("/v1/chat/completions", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["message"] == REFUSAL
    assert inference.requests == []


def test_lcp3_dos_forced_tool_parameters_are_bounded_too() -> None:
    inference = FakeInference()
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"s": {"type": "string", "maxLength": 5000}}}}}
    body = {"model": "m", "messages": [{"role": "user", "content": "go"}], "tools": [tool], "tool_choice": "required",
            "stream": False}
    answer = gateway(model(capabilities=["completion", "tools"]), inference).post("/api/chat", json=body)
    assert answer.status_code == 400 and answer.json()["error"].startswith("invalid tool parameters: maxLength is "
                                                                          "5000 at #/functions/0/parameters/")
    assert inference.requests == []


def test_oll7_dos_a_body_over_the_json_cap_is_a_413_and_generate_takes_images_sized_bodies() -> None:
    client = gateway(model())
    answer = client.post("/api/show", content=b'{"model": "' + b"m" * (5 << 20) + b'"}',
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "at most 4194304 bytes" in answer.json()["error"]
    image_sized = {"model": "m", "prompt": "p" * (5 << 20), "raw": True, "stream": False}
    assert client.post("/api/generate", json=image_sized).status_code == 200
