"""The client paths of issue 15: token-id (cl100k_base) embedding inputs, lists of prompts, the whole prompt in
usage on a cache hit, and ``n`` choices, driven through the gateway with fake registry and inference."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from corral_common.errors import AppError, BadRequest
from corral_common.internal import CompletionEvent, CompletionRequest, EmbedInputs, EmbedOutput

from corral_api.openai import choices, tokens, translate
from corral_api.openai.schemas import ChatCompletionRequest, TextCompletionRequest
from corral_api.testing import FakeInference, gateway, model

MODEL = model("{{ .Prompt }}")
ASK = [{"role": "user", "content": "hi"}]
CACHED = [CompletionEvent(content="Hel"), CompletionEvent(content="lo"),
          CompletionEvent(done=True, done_reason="stop", prompt_eval_count=1, cached_tokens=9, eval_count=2)]


class EmbeddingInference(FakeInference):
    """Also embeds: one vector per input (its length, 1.0), recording what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[EmbedInputs] = []

    async def embed(self, req: EmbedInputs, request_id: str) -> EmbedOutput:
        self.embedded.append(req)
        lengths = [len(t) for t in req.inputs]
        return EmbedOutput(embeddings=[[float(n), 1.0] for n in lengths], prompt_eval_count=sum(lengths))


class Numbered(FakeInference):
    """Answers each request with its own number ("0", "1", ...) so choices can be told apart."""

    async def complete(self, req: CompletionRequest, request_id: str) -> AsyncIterator[CompletionEvent]:
        number = len(self.requests)
        self.requests.append(req)
        await asyncio.sleep(0)
        yield CompletionEvent(content=f"answer {number}")
        yield CompletionEvent(done=True, done_reason="stop", prompt_eval_count=3, cached_tokens=1, eval_count=2)


def _client(inference: FakeInference) -> TestClient:
    return gateway(MODEL, inference)


def _events(text: str) -> list[dict[str, Any]]:
    data = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


# --- token-id embedding inputs ---------------------------------------------------------------------------------


HELLO_WORLD = [9906, 1917]  # tiktoken.get_encoding("cl100k_base").encode("Hello world")
SOMEONE_IS = [55611, 374]  # "Someone is": 55611 is past the vocabulary of most embedding models


def test_cl100k_ids_decode_to_their_text() -> None:
    assert tokens.decode(HELLO_WORLD) == "Hello world"
    assert tokens.decode(SOMEONE_IS + [610, 372, 5424, 264, 17418, 13]) == "Someone is strumming a guitar."
    assert tokens.decode([100257]) == "<|endoftext|>"  # a special token spells its own name


@pytest.mark.parametrize("bad", [-1, 100256, 100261, 100277, 2**63])  # 100256 and 100261-100275 are holes
def test_an_id_cl100k_lacks_is_an_unknown_token_naming_it(bad: int) -> None:
    with pytest.raises(tokens.UnknownToken, match=rf"token id {bad} is not a cl100k_base token \(ids 0 to 100276\)"):
        tokens.decode([9906, bad])


def test_lists_of_ids_are_embedded_as_their_text_one_input_each() -> None:
    inference = EmbeddingInference()
    client = _client(inference)
    by_ids = client.post("/v1/embeddings", json={"model": "m", "input": [HELLO_WORLD, SOMEONE_IS]}).json()
    by_text = client.post("/v1/embeddings", json={"model": "m", "input": ["Hello world", "Someone is"]}).json()
    assert [e.inputs for e in inference.embedded] == [["Hello world", "Someone is"]] * 2
    assert [d["index"] for d in by_ids["data"]] == [0, 1] and by_ids["data"] == by_text["data"]
    assert by_ids["usage"] == by_text["usage"] and by_ids["usage"]["prompt_tokens"] == 21  # the text's count


def test_one_list_of_ids_is_one_input() -> None:
    inference = EmbeddingInference()
    result = _client(inference).post("/v1/embeddings", json={"model": "m", "input": HELLO_WORLD}).json()
    assert len(result["data"]) == 1 and inference.embedded[0].inputs == ["Hello world"]


def test_an_unknown_id_is_a_400_naming_it() -> None:
    inference = EmbeddingInference()
    body = {"model": "m", "input": [HELLO_WORLD, [9906, 100277]]}
    response = _client(inference).post("/v1/embeddings", json=body)
    assert response.status_code == 400 and "token id 100277" in response.json()["error"]["message"]
    assert response.json()["error"]["type"] == "invalid_request_error" and inference.embedded == []


def test_native_embed_still_refuses_ids() -> None:
    response = _client(EmbeddingInference()).post("/api/embed", json={"model": "m", "input": [1, 2]})
    assert response.status_code == 400 and response.json() == {"error": "invalid input type"}


# --- lists of prompts ------------------------------------------------------------------------------------------


def test_a_list_of_prompts_is_one_choice_each_with_usage_summed() -> None:
    inference = Numbered()
    result = _client(inference).post("/v1/completions", json={"model": "m", "prompt": ["a", "b", "c"]}).json()
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    assert sorted(c["text"] for c in result["choices"]) == ["answer 0", "answer 1", "answer 2"]
    assert sorted(r.prompt for r in inference.requests) == ["a", "b", "c"]
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
                               "prompt_tokens_details": {"cached_tokens": 3}}


def test_a_list_of_prompts_streams_each_choice_with_its_index() -> None:
    body = {"model": "m", "prompt": ["a", "b"], "stream": True, "stream_options": {"include_usage": True}}
    chunks = _events(_client(Numbered()).post("/v1/completions", json=body).text)
    *choice_chunks, last = chunks
    assert {c["choices"][0]["index"] for c in choice_chunks} == {0, 1}
    assert all(c["usage"]["total_tokens"] == 0 for c in choice_chunks)
    assert {c["choices"][0]["finish_reason"] for c in choice_chunks if c["choices"][0]["finish_reason"]} == {"stop"}
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 8 and last["usage"]["completion_tokens"] == 4


def test_echo_prepends_each_choice_its_own_prompt() -> None:
    result = _client(Numbered()).post("/v1/completions", json={"model": "m", "prompt": ["x ", "y "],
                                                              "echo": True}).json()
    assert {c["text"][:2] for c in result["choices"]} == {"x ", "y "}
    assert all(c["text"][:2] == ("x ", "y ")[c["index"]] for c in result["choices"])


@pytest.mark.parametrize(("prompt", "message"), [
    ([1, 2], "token-id prompts are not supported"), ([[1], [2]], "token-id prompts are not supported"),
    ([], "non-empty array of strings"), (["a", 1], "non-empty array of strings"),
])
def test_prompts_refused(prompt: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        translate.generate_requests(TextCompletionRequest.model_validate({"model": "m", "prompt": prompt}))


def test_n_per_prompt_comes_in_openais_order() -> None:
    natives = translate.generate_requests(TextCompletionRequest.model_validate(
        {"model": "m", "prompt": ["a", "b"], "n": 2, "seed": 5}))
    assert [(r.prompt, r.options["seed"]) for r in natives] == [("a", 5), ("a", 6), ("b", 5), ("b", 6)]


# --- the whole prompt in usage ---------------------------------------------------------------------------------


def test_chat_usage_counts_the_whole_prompt_and_the_cached_part() -> None:
    result = _client(FakeInference(events=CACHED)).post("/v1/chat/completions",
                                                          json={"model": "m", "messages": ASK}).json()
    assert result["usage"] == {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12,
                               "prompt_tokens_details": {"cached_tokens": 9}}


def test_completion_usage_counts_the_whole_prompt() -> None:
    body = {"model": "m", "prompt": "hi", "stream": True, "stream_options": {"include_usage": True}}
    last = _events(_client(FakeInference(events=CACHED)).post("/v1/completions", json=body).text)[-1]
    assert last["usage"]["prompt_tokens"] == 10 and last["usage"]["prompt_tokens_details"] == {"cached_tokens": 9}


def test_responses_usage_counts_the_whole_prompt() -> None:
    result = _client(FakeInference(events=CACHED)).post("/v1/responses", json={"model": "m", "input": "hi"}).json()
    assert result["usage"]["input_tokens"] == 10 and result["usage"]["input_tokens_details"] == {"cached_tokens": 9}
    assert result["usage"]["total_tokens"] == 12


def test_anthropic_usage_counts_the_whole_prompt() -> None:
    body = {"model": "m", "max_tokens": 8, "messages": ASK}
    result = _client(FakeInference(events=CACHED)).post("/v1/messages", json=body).json()
    assert result["usage"] == {"input_tokens": 10, "output_tokens": 2}


def test_anthropic_message_start_has_the_count_when_the_first_chunk_is_the_last() -> None:
    from corral_api.anthropic.stream import MessagesStream

    final = {"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 1, "cached_tokens": 4, "eval_count": 1}
    start = MessagesStream("m").translate(final)[0]
    assert start["message"]["usage"] == {"input_tokens": 5, "output_tokens": 0}
    first = MessagesStream("m").translate({**final, "done": False})[0]
    assert first["message"]["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_native_chat_keeps_prompt_eval_count_exact_and_no_cached_field() -> None:
    client = _client(FakeInference(events=CACHED))
    answer = client.post("/api/chat", json={"model": "m", "messages": ASK, "stream": False}).json()
    assert answer["prompt_eval_count"] == 1 and "cached_tokens" not in answer
    lines = [json.loads(x) for x in client.post("/api/generate", json={"model": "m", "prompt": "hi"}).text.split("\n")
             if x]
    assert lines[-1]["prompt_eval_count"] == 1 and not any("cached_tokens" in x for x in lines)


# --- n choices -------------------------------------------------------------------------------------------------


def test_n_chat_choices_are_indexed_and_the_prompt_counted_once() -> None:
    inference = Numbered()
    body = {"model": "m", "messages": ASK, "n": 3, "seed": 1}
    result = _client(inference).post("/v1/chat/completions", json=body).json()
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    assert sorted(c["message"]["content"] for c in result["choices"]) == ["answer 0", "answer 1", "answer 2"]
    assert sorted(r.options["seed"] for r in inference.requests) == [1, 2, 3]
    assert result["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10,
                               "prompt_tokens_details": {"cached_tokens": 1}}


def test_n_chat_stream_chunks_carry_their_choice_index() -> None:
    body = {"model": "m", "messages": ASK, "n": 2, "stream": True, "stream_options": {"include_usage": True}}
    chunks = _events(_client(Numbered()).post("/v1/chat/completions", json=body).text)
    *choice_chunks, usage = chunks
    by_index: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for chunk in choice_chunks:
        by_index[chunk["choices"][0]["index"]].append(chunk["choices"][0])
    for deltas in by_index.values():
        assert deltas[0]["delta"]["role"] == "assistant" and deltas[-1]["finish_reason"] == "stop"
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4 and usage["usage"]["prompt_tokens"] == 4
    assert len({c["id"] for c in chunks}) == 1


@pytest.mark.parametrize(("n", "message"), [(9, "9 is greater than the maximum of 8 - 'n'"),
                                             (0, "0 is less than the minimum of 1 - 'n'")])
def test_n_out_of_range_is_a_400_saying_the_limit(n: int, message: str) -> None:
    response = _client(Numbered()).post("/v1/chat/completions", json={"model": "m", "messages": ASK, "n": n})
    assert response.status_code == 400 and response.json()["error"]["message"] == message


def test_n_without_a_seed_copies_the_request() -> None:
    natives = translate.chat_requests(ChatCompletionRequest.model_validate({"model": "m", "messages": ASK, "n": 2}))
    assert len(natives) == 2 and "seed" not in (natives[1].options or {})


# --- running choices at once -----------------------------------------------------------------------------------


async def _items(name: str, count: int, fail: bool = False) -> AsyncIterator[str]:
    for i in range(count):
        await asyncio.sleep(0)
        yield f"{name}{i}"
    if fail:
        raise AppError("runner crashed")


def test_merged_interleaves_and_tags_each_item() -> None:
    async def collect() -> list[tuple[int, str]]:
        return [pair async for pair in choices.merged([_items("a", 2), _items("b", 3)])]

    out = asyncio.run(collect())
    assert sorted(out) == [(0, "a0"), (0, "a1"), (1, "b0"), (1, "b1"), (1, "b2")]


def test_an_error_in_one_stream_ends_the_merge_and_closes_the_others() -> None:
    closed: list[str] = []

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                await asyncio.sleep(0)
                yield "x"
        finally:
            closed.append("endless")

    async def drain() -> None:
        async for _ in choices.merged([endless(), _items("b", 1, fail=True)]):
            pass

    with pytest.raises(AppError, match="runner crashed"):
        asyncio.run(drain())
    assert closed == ["endless"]


def test_an_error_before_any_choice_keeps_its_status() -> None:
    response = _client(FakeInference(fail_after=0)).post("/v1/chat/completions",
                                                        json={"model": "m", "messages": ASK, "n": 2})
    assert response.status_code == 500 and response.json()["error"]["message"] == "runner crashed"
