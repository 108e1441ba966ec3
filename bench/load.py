"""Prompts and the streaming load generator: N concurrent clients on OpenAI ``/v1/completions``."""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

TOPICS = [
    "lighthouses", "honey bees", "the printing press", "volcanoes", "the violin", "coral reefs", "glaciers",
    "the steam engine", "tea ceremonies", "desert caravans", "the telescope", "rainforests", "windmills",
    "ancient libraries", "sailing ships", "the bicycle", "mountain railways", "paper making", "city parks",
    "the compass", "bread baking", "river deltas", "clock towers", "silk roads", "hot air balloons",
    "public baths", "the piano", "salt mines", "night markets", "stone bridges", "owls", "the postal service",
]
ANGLES = [
    "where it came from", "how it works", "the people who depend on it", "what changed in the last century",
    "the surprising details most people miss", "what it teaches us about patience",
]


def prompt(key: str, index: int) -> str:
    """A unique ChatML prompt of about 85 tokens that asks for a long answer.

    The unique part comes first, so that no server can reuse another request's cached prefix
    beyond the three-token chat header. The same (key, index) gives the same text on every server.
    """
    topic = TOPICS[index % len(TOPICS)]
    angles = ", ".join(ANGLES[(index + k) % len(ANGLES)] for k in range(3))
    body = (f"Request {key}-{index}. Write a long and detailed essay about {topic}. "
            f"Describe {angles}. Use at least six paragraphs, give concrete examples and small stories, "
            f"and do not stop early: the reader wants every detail you can think of about {topic}, told in plain and simple words.")
    return f"<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n"


Count = Callable[[str], int]


def token_counter(model: Path) -> Count:
    """Token count of a text as the servers see it (the GGUF's vocabulary only, no weights)."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def filler(key: str, head: str, tail: str, count: Count, target: int) -> str:
    """``head`` + varied sentences + ``tail``, about ``target`` tokens; the same key gives the same text."""
    rng = random.Random(key)
    sentences: list[str] = []
    while count(head + " ".join(sentences) + tail) < target:
        topic, angle = rng.choice(TOPICS), rng.choice(ANGLES)
        sentences.append(f"Note {len(sentences) + 1} on {topic}: think about {angle}, and keep it in mind.")
    return head + " ".join(sentences) + tail


def long_prompt(key: str, count: Count) -> str:
    """A ~2000-token user message (its unique part first) asking for a short summary (issue 17 item 2)."""
    return filler(key, f"<|im_start|>user\nDocument {key}. Read these notes.\n",
                  "\nSummarize the notes in one paragraph.<|im_end|>\n<|im_start|>assistant\n", count, 2000)


def first_turn(key: str, index: int, count: Count) -> str:
    """A conversation's first turn: a unique ~300-token system prompt, then a question (issue 17 item 5).

    The key comes right after the ChatML header, so conversations share only those 3 tokens (start keys
    with a different digit: the way any two chats differ, not an accidental longer common prefix)."""
    topic = TOPICS[index % len(TOPICS)]
    return filler(key, f"<|im_start|>system\n{key}: you are a patient guide. House rules:\n",
                  f"<|im_end|>\n<|im_start|>user\nTell me about {topic}.<|im_end|>\n<|im_start|>assistant\n",
                  count, 300)


def second_turn(first: str, answer: str) -> str:
    """The same history, the model's answer, and one new user message."""
    return (f"{first}{answer}<|im_end|>\n<|im_start|>user\nThank you. What is the single most important point "
            f"of that?<|im_end|>\n<|im_start|>assistant\n")


@dataclass
class Stream:
    """One streamed request as the client saw it (times in seconds from its own start)."""

    ttft: float | None = None
    total: float | None = None
    tokens: int = 0
    error: str | None = None
    status: int | None = None  # the HTTP status, None when no response came (connection error, timeout)

    @property
    def decode_rate(self) -> float | None:
        """Generated tokens/s after the first token."""
        if self.error or self.ttft is None or self.total is None or self.tokens < 2 or self.total <= self.ttft:
            return None
        return (self.tokens - 1) / (self.total - self.ttft)


@dataclass
class LevelRun:
    """One repetition of one concurrency level against one server."""

    streams: int
    wall: float
    requests: list[Stream] = field(default_factory=list)

    def summary(self) -> dict:
        ok = [r for r in self.requests if not r.error]
        ttfts = sorted(r.ttft for r in ok if r.ttft is not None)
        rates = [rate for r in ok if (rate := r.decode_rate) is not None]
        tokens = sum(r.tokens for r in ok)
        return {
            "streams": self.streams, "wall_s": self.wall, "requests": len(self.requests),
            "errors": len(self.requests) - len(ok), "generated_tokens": tokens,
            "mean_tokens_per_request": tokens / len(ok) if ok else 0.0,
            "aggregate_tok_s": tokens / self.wall if self.wall > 0 else 0.0,
            "per_stream_tok_s": statistics.median(rates) if rates else None,
            "ttft_p50_s": percentile(ttfts, 50), "ttft_p95_s": percentile(ttfts, 95),
            "error_messages": sorted({r.error for r in self.requests if r.error})[:5],
        }

    def to_json(self) -> dict:
        return {**self.summary(), "raw": [asdict(r) for r in self.requests]}


def percentile(values: list[float], pct: float) -> float | None:
    """Linear-interpolated percentile of sorted values (None when empty)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


OnText = Callable[[str, float], None]


async def stream_request(client: httpx.AsyncClient, url: str, body: dict, timeout: float,
                         on_text: OnText | None = None) -> Stream:
    """One streamed ``/v1/completions`` request; ``on_text(text, perf_counter time)`` sees every text chunk
    as it arrives (to keep the answer, or to time the tokens of a stream while something else happens)."""
    result = Stream()
    began = time.perf_counter()
    counted, usage_tokens = 0, None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body) as response:
                result.status = response.status_code
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")[:200]
                    result.error = f"HTTP {response.status_code}: {text}"
                    return result
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        result.error = f"stream error: {str(chunk['error'])[:200]}"
                        return result
                    usage = chunk.get("usage") or {}
                    if usage.get("completion_tokens"):
                        usage_tokens = usage["completion_tokens"]
                    for choice in chunk.get("choices") or []:
                        if choice.get("text"):
                            now = time.perf_counter()
                            counted += 1
                            if result.ttft is None:
                                result.ttft = now - began
                            if on_text is not None:
                                on_text(choice["text"], now)
        result.total = time.perf_counter() - began
        # A chunk usually carries one token; the server's own count wins where it gives one.
        result.tokens = usage_tokens or counted
        if result.tokens == 0:
            result.error = "no tokens"
    except TimeoutError:
        result.error = f"timeout after {timeout:.0f} s"
    except (httpx.HTTPError, json.JSONDecodeError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return result


def completion_body(model: str, text: str, max_tokens: int) -> dict:
    """The streamed, greedy ``/v1/completions`` request every benchmark sends."""
    return {"model": model, "prompt": text, "max_tokens": max_tokens, "temperature": 0, "seed": 42,
            "stream": True, "stream_options": {"include_usage": True}}


def http_client(connections: int, timeout: float) -> httpx.AsyncClient:
    """An HTTP client for ``connections`` simultaneous streams, each on a fresh connection, never via a proxy."""
    limits = httpx.Limits(max_connections=connections + 2, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10), limits=limits, trust_env=False)


async def _one(client: httpx.AsyncClient, url: str, body: dict, start: asyncio.Event, timeout: float) -> Stream:
    await start.wait()
    return await stream_request(client, url, body, timeout)


async def run_level(base_url: str, model: str, prompts: list[str], max_tokens: int, timeout: float) -> LevelRun:
    """All prompts at once, one streaming client each; wall time from release to the last byte."""
    async with http_client(len(prompts), timeout) as http:
        start = asyncio.Event()
        url = f"{base_url}/v1/completions"
        tasks = [asyncio.create_task(_one(http, url, completion_body(model, text, max_tokens), start, timeout))
                 for text in prompts]
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        start.set()
        requests = await asyncio.gather(*tasks)
        return LevelRun(len(prompts), time.perf_counter() - began, list(requests))
