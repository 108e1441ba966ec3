"""Continuous batching, prompt-cache reuse, cancellation and the queue limit, on a real model."""

from __future__ import annotations

import json
import threading
import time

import httpx
import ollama
import pytest

from serverproc import start_server, stop_server

pytestmark = pytest.mark.e2e
MODEL = "smollm2:135m"
OPTS = {"temperature": 0, "seed": 7, "num_predict": 24}
QUESTIONS = ["Name a fruit.", "What is the capital of Italy?", "Say something about the sea.", "Count to five."]


def _chat_text(client: ollama.Client, question: str) -> str:
    chunks = client.chat(MODEL, messages=[{"role": "user", "content": question}], options=OPTS, stream=True)
    return "".join(c.message.content for c in chunks)


def test_four_concurrent_streams_match_their_solo_answers(client: ollama.Client) -> None:
    alone = [_chat_text(client, q) for q in QUESTIONS]
    together: list[str] = [""] * len(QUESTIONS)

    def run(i: int) -> None:
        together[i] = _chat_text(client, QUESTIONS[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == alone


def test_second_chat_turn_reuses_the_cached_prefix(client: ollama.Client) -> None:
    messages = [{"role": "system", "content": "You are a helpful assistant who answers briefly and politely."},
                {"role": "user", "content": "Tell me about owls."}]
    first = client.chat(MODEL, messages=messages, options=OPTS)
    messages += [{"role": "assistant", "content": first.message.content},
                 {"role": "user", "content": "And about cats?"}]
    second = client.chat(MODEL, messages=messages, options=OPTS)
    full_prompt = first.prompt_eval_count + first.eval_count
    assert second.prompt_eval_count < full_prompt


def _first_chunk_then_close(url: str, body: dict) -> None:
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=60) as response:
        for _line in response.iter_lines():
            break


def test_disconnects_free_their_slots(tmp_path) -> None:
    srv = start_server(tmp_path, {"OLLAMA_NUM_PARALLEL": "1"})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        long = {"model": MODEL, "prompt": "Write a very long story.", "options": {"num_predict": 2000}}
        _first_chunk_then_close(srv.url, long)  # mid-stream
        eval_body = {"model": MODEL, "prompt": "word " * 1500, "options": {"num_predict": 5}}
        try:
            httpx.post(f"{srv.url}/api/generate", json=eval_body, timeout=0.3)  # gone during prompt eval
        except httpx.TimeoutException:
            pass
        started = time.monotonic()
        result = httpx.post(f"{srv.url}/api/generate", json={"model": MODEL, "prompt": "Hi", "stream": False,
                                                              "options": {"num_predict": 3}}, timeout=60).json()
        assert result["done"] is True
        # with one slot, this only gets through because both abandoned requests released it
        assert time.monotonic() - started < 30
    finally:
        stop_server(srv.process)


def test_queue_limit_answers_503_with_ollamas_text(tmp_path) -> None:
    srv = start_server(tmp_path, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "1"})
    try:
        from corral_cli.bundled import import_bundled

        import_bundled(srv.url, only=(MODEL,))
        httpx.post(f"{srv.url}/api/generate", json={"model": MODEL}, timeout=60)  # load
        started = threading.Event()
        statuses: list[int] = []
        errors: list[str] = []

        def call(num_predict: int, stream: bool = False) -> None:
            # The format forbids an early end: the model must write 300 numbers, so it is cut at num_predict.
            body = {"model": MODEL, "prompt": "List numbers.", "stream": stream, "options": {"num_predict": num_predict},
                    "format": {"type": "array", "items": {"type": "integer"}, "minItems": 300}}
            with httpx.stream("POST", f"{srv.url}/api/generate", json=body, timeout=600) as response:
                lines = []
                for line in response.iter_lines():
                    started.set()  # the slot is generating: it stays busy for hundreds of tokens
                    lines.append(line)
                statuses.append(response.status_code)
                if response.status_code != 200:
                    errors.append(json.loads("".join(lines))["error"])

        # The first request holds the only slot for 400 tokens; the second waits in the queue (its one
        # place); the third, sent while both are still there, finds the queue full.
        first = threading.Thread(target=call, args=(400, True))
        first.start()
        assert started.wait(120), "the first request never started generating"
        second = threading.Thread(target=call, args=(4,))
        second.start()
        time.sleep(0.5)
        call(4)
        for t in (first, second):
            t.join(600)
        assert sorted(statuses) == [200, 200, 503]
        assert errors == ["server busy, please try again.  maximum pending requests exceeded"]
    finally:
        stop_server(srv.process)


def _burst_one(url: str, i: int) -> tuple[int, str]:
    """One client of the burst: a streamed answer through the native or the OpenAI API; (status, text)."""
    question = f"Client {i}: {QUESTIONS[i % len(QUESTIONS)]}"
    if i % 2:
        body = {"model": MODEL, "stream": True, "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": question}]}
        path, pick = "/v1/chat/completions", lambda d: (d["choices"][0]["delta"].get("content") or "") if d["choices"] else ""
    else:
        body = {"model": MODEL, "prompt": question, "options": {**OPTS, "num_predict": 4}}
        path, pick = "/api/generate", lambda d: d.get("response", "")
    text = []
    with httpx.stream("POST", url + path, json=body, timeout=600) as response:
        for line in response.iter_lines():
            line = line.removeprefix("data: ")
            if line and line != "[DONE]":
                text.append(pick(json.loads(line)))
        return response.status_code, "".join(text)


def test_a_burst_of_64_clients_with_the_default_queue_is_answered_in_full(server) -> None:
    """64 clients at once (default parallelism and queue): every one gets a 200 and a non-empty streamed answer."""
    results: list[tuple[int, str] | BaseException] = [RuntimeError("never ran")] * 64

    def run(i: int) -> None:
        try:
            results[i] = _burst_one(server.url, i)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    failed = [(i, r) for i, r in enumerate(results) if not isinstance(r, tuple) or r[0] != 200 or not r[1].strip()]
    assert failed == []


def test_context_overflow_is_never_silent(server) -> None:
    long_prompt = "Tell me about the weather. " * 40
    body = {"model": MODEL, "prompt": long_prompt, "stream": False, "options": {"num_ctx": 64, "num_predict": 4}}
    truncated = httpx.post(f"{server.url}/api/generate", json=body, timeout=60).json()
    assert truncated["done"] is True and truncated["truncated_tokens"] > 0
    refused = httpx.post(f"{server.url}/api/generate", json={**body, "truncate": False}, timeout=60)
    assert refused.status_code == 400
    assert refused.json() == {"error": "the input length exceeds the context length"}
