"""Structured outputs (format json / JSON schema through a llama.cpp grammar) and logprobs, end to end."""

from __future__ import annotations

import json

import httpx
import ollama
import openai
import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"


class Pet(BaseModel):
    name: str
    age: int
    vaccinated: bool


def test_format_json_always_parses(client: ollama.Client) -> None:
    result = client.generate(MODEL, "Describe a cat as JSON.", format="json",
                             options={"temperature": 0, "num_predict": 60})
    if result.done_reason == "stop":
        assert isinstance(json.loads(result.response), (dict, list))
    else:
        assert result.response.lstrip().startswith(("{", "["))


def test_format_schema_validates_with_pydantic(client: ollama.Client) -> None:
    response = client.chat(MODEL, messages=[{"role": "user", "content": "Invent a pet and describe it."}],
                           format=Pet.model_json_schema(), options={"temperature": 0, "num_predict": 80})
    assert response.done_reason == "stop"
    pet = Pet.model_validate_json(response.message.content)
    assert pet.name


def test_format_schema_streamed_joins_to_valid_json(client: ollama.Client) -> None:
    chunks = client.chat(MODEL, messages=[{"role": "user", "content": "Invent a pet."}], stream=True,
                         format=Pet.model_json_schema(), options={"temperature": 0, "num_predict": 80})
    Pet.model_validate_json("".join(c.message.content for c in chunks))


ZETA_ALPHA = {"type": "object", "required": ["zeta", "alpha"],
              "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}
ZETA_ASK = [{"role": "user", "content": "Reply in JSON with a word and a number."}]


def _first_key(text: str) -> str:
    """The first key of a JSON object's text, read even when the text was cut off."""
    return json.JSONDecoder().raw_decode(text.lstrip()[1:].lstrip())[0]


def test_schema_keys_come_in_the_schemas_order_native(client: ollama.Client) -> None:
    response = client.chat(MODEL, messages=ZETA_ASK, format=ZETA_ALPHA, options={"temperature": 0, "num_predict": 40})
    assert _first_key(response.message.content) == "zeta"


def test_schema_keys_come_in_the_schemas_order_v1(server) -> None:
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="corral", max_retries=0)
    result = sdk.chat.completions.create(model=MODEL, messages=ZETA_ASK, temperature=0, max_tokens=40,
                                         response_format={"type": "json_schema", "json_schema": {
                                             "name": "pair", "schema": ZETA_ALPHA}})
    assert _first_key(result.choices[0].message.content) == "zeta"


@pytest.mark.parametrize("fmt, message", [("xml", 'invalid format: "xml"'), (5, "invalid format: 5"),
                                          ({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}},
                                           "invalid format")])
def test_bad_format_is_a_400_naming_the_problem(server, fmt, message: str) -> None:
    response = httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "prompt": "hi", "format": fmt,
                                                              "stream": False}, timeout=60)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_logprobs_per_token_with_alternatives(server) -> None:
    body = {"model": MODEL, "prompt": "The capital of France is", "stream": False, "raw": True,
            "logprobs": True, "top_logprobs": 3, "options": {"temperature": 0, "num_predict": 5}}
    result = httpx.post(f"{server.url}/api/generate", json=body, timeout=60).json()
    logprobs = result["logprobs"]
    assert len(logprobs) == result["eval_count"]
    assert "".join(item["token"] for item in logprobs) == result["response"]
    for item in logprobs:
        assert item["logprob"] <= 0
        assert len(item["top_logprobs"]) == 3
        # greedy decoding picks the most likely token
        assert item["top_logprobs"][0]["token"] == item["token"]
        assert item["top_logprobs"][0]["logprob"] >= item["top_logprobs"][1]["logprob"]
