"""Native chunks and results → OpenAI objects: completions, stream chunks, models, embeddings (§4.1–§4.4)."""

from __future__ import annotations

import base64
import json
import random
import re
import struct
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import datetime
from typing import Any

from corral_common.names import InvalidName, ModelName

from corral_api.compat import prompt_tokens

FINGERPRINT = "fp_ollama"
_RFC3339 = re.compile(r"^(?P<base>[^.]+?)(?:\.(?P<fraction>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)$")


def new_id(prefix: str) -> str:
    """``chatcmpl-<n>`` / ``cmpl-<n>`` with n in 0..998, as Ollama numbers them."""
    return f"{prefix}-{random.randrange(999)}"


def usage(final: dict[str, Any]) -> dict[str, Any]:
    """Token counts of a native final chunk: the whole prompt, with the part reused from the cache when the
    chunk says it (``cached_tokens``)."""
    (prompt, cached), completion = prompt_tokens(final), final.get("eval_count", 0)
    counts: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion}
    if "cached_tokens" in final:
        counts["prompt_tokens_details"] = {"cached_tokens": cached}
    return counts


def finish_reason(done_reason: str | None, tool_calls: bool) -> str | None:
    """Native ``done_reason``; ``stop`` becomes ``tool_calls`` when the model called tools."""
    if done_reason == "stop" and tool_calls:
        return "tool_calls"
    return done_reason or None


def tool_calls(native: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Native tool calls (arguments an object) → OpenAI's (arguments a JSON string, ``type: function``)."""
    calls = []
    for position, call in enumerate(native):
        function = call.get("function", {})
        arguments = json.dumps(function.get("arguments", {}), ensure_ascii=False, separators=(",", ":"))
        calls.append({"id": call.get("id", ""), "index": function.get("index", position), "type": "function",
                      "function": {"name": function.get("name", ""), "arguments": arguments}})
    return calls


def chat_completion(ident: str, created: int, native: dict[str, Any]) -> dict[str, Any]:
    """The ``chat.completion`` object for a collected native chat result."""
    message = native["message"]
    reply: dict[str, Any] = {"role": "assistant", "content": message["content"]}
    if message.get("thinking"):
        reply["reasoning"] = message["thinking"]
    if message.get("tool_calls"):
        reply["tool_calls"] = tool_calls(message["tool_calls"])
    choice: dict[str, Any] = {"index": 0, "message": reply,
                              "finish_reason": finish_reason(native.get("done_reason"), "tool_calls" in reply)}
    if native.get("logprobs"):
        choice["logprobs"] = {"content": native["logprobs"]}
    return {"id": ident, "object": "chat.completion", "created": created, "model": native.get("model", ""),
            "system_fingerprint": FINGERPRINT, "choices": [choice], "usage": usage(native)}


class NativeStream:
    """A native stream translated chunk by chunk; each subclass says what one chunk becomes."""

    def translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks for one native chunk."""
        raise NotImplementedError

    async def events(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Translate a whole native stream."""
        async with aclosing(chunks):
            async for chunk in chunks:
                for event in self.translate(chunk):
                    yield event


class ChatStream(NativeStream):
    """Native chat chunks → ``chat.completion.chunk`` objects: role once, a finish chunk, optional usage."""

    def __init__(self, ident: str, created: int, include_usage: bool, index: int = 0) -> None:
        self.ident, self.created, self.include_usage, self.index = ident, created, include_usage, index
        self.role_sent = False
        self.tool_calls_sent = False

    def _chunk(self, model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.ident, "object": "chat.completion.chunk", "created": self.created, "model": model,
                "system_fingerprint": FINGERPRINT, "choices": choices}

    def _delta(self, model: str, delta: dict[str, Any], logprobs: list[dict[str, Any]] | None) -> dict[str, Any]:
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        self.tool_calls_sent = self.tool_calls_sent or "tool_calls" in delta
        choice: dict[str, Any] = {"index": self.index, "delta": delta, "finish_reason": None}
        if logprobs:
            choice["logprobs"] = {"content": logprobs}
        return self._chunk(model, [choice])

    def _deltas(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """One delta, or a reasoning delta then a content delta when a chunk carries both."""
        model, message, logprobs = chunk.get("model", ""), chunk.get("message", {}), chunk.get("logprobs")
        thinking, calls = message.get("thinking", ""), tool_calls(message.get("tool_calls") or [])
        content: dict[str, Any] = {"content": message.get("content", "")}
        if calls:
            content["tool_calls"] = calls
        if not thinking:
            return [self._delta(model, content, logprobs)]
        if not content["content"] and not calls:
            return [self._delta(model, {**content, "reasoning": thinking}, logprobs)]
        return [self._delta(model, {"reasoning": thinking}, logprobs), self._delta(model, content, None)]

    def _is_empty_trailer(self, chunk: dict[str, Any]) -> bool:
        """The metrics-only done chunk: OpenAI goes straight from the last content to the finish chunk."""
        message = chunk.get("message", {})
        return bool(chunk.get("done") and self.role_sent and not message.get("content")
                    and not message.get("thinking") and not message.get("tool_calls") and not chunk.get("logprobs"))

    def translate(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks for one native chunk (the last one adds the finish and usage chunks)."""
        out = [] if self._is_empty_trailer(chunk) else self._deltas(chunk)
        if chunk.get("done"):
            model = chunk.get("model", "")
            reason = finish_reason(chunk.get("done_reason") or "stop", self.tool_calls_sent)
            out.append(self._chunk(model, [{"index": self.index, "delta": {}, "finish_reason": reason}]))
            if self.include_usage:
                out.append({**self._chunk(model, []), "usage": usage(chunk)})
        return out


def legacy_logprobs(items: list[dict[str, Any]], offset: int) -> dict[str, Any]:
    """Native logprobs in the completions API's shape: parallel lists, text offsets from ``offset``."""
    offsets = []
    for item in items:
        offsets.append(offset)
        offset += len(item.get("token", ""))
    return {"tokens": [i.get("token", "") for i in items], "token_logprobs": [i.get("logprob") for i in items],
            "top_logprobs": [{t["token"]: t["logprob"] for t in i.get("top_logprobs") or []} for i in items],
            "text_offset": offsets}


def _text_choice(text: str, done_reason: str | None, logprobs: dict[str, Any] | None,
                 index: int = 0) -> dict[str, Any]:
    choice: dict[str, Any] = {"text": text, "index": index, "finish_reason": done_reason or None}
    if logprobs:
        choice["logprobs"] = logprobs
    return choice


def completion(ident: str, created: int, native: dict[str, Any], echo: str) -> dict[str, Any]:
    """The ``text_completion`` object for a collected native generate result (``echo``: the prompt to prepend)."""
    items = native.get("logprobs") or []
    logprobs = legacy_logprobs(items, len(echo)) if items else None
    choice = _text_choice(echo + native.get("response", ""), native.get("done_reason"), logprobs)
    return {"id": ident, "object": "text_completion", "created": created, "model": native.get("model", ""),
            "system_fingerprint": FINGERPRINT, "choices": [choice], "usage": usage(native)}


class CompletionStream(NativeStream):
    """Native generate chunks → ``text_completion`` chunks; with usage, every chunk carries zero usage."""

    def __init__(self, ident: str, created: int, include_usage: bool, echo: str, index: int = 0) -> None:
        self.ident, self.created, self.include_usage, self.index = ident, created, include_usage, index
        self.pending_echo, self.offset = echo, 0

    def _chunk(self, model: str, choices: list[dict[str, Any]], counts: dict[str, int] | None) -> dict[str, Any]:
        chunk = {"id": self.ident, "object": "text_completion", "created": self.created, "choices": choices,
                 "model": model, "system_fingerprint": FINGERPRINT}
        return {**chunk, "usage": counts} if counts is not None else chunk

    def translate(self, native: dict[str, Any]) -> list[dict[str, Any]]:
        """The OpenAI chunks for one native chunk (the last one adds the usage chunk)."""
        echo, response, self.pending_echo = self.pending_echo, native.get("response", ""), ""
        items = native.get("logprobs") or []
        logprobs = legacy_logprobs(items, self.offset + len(echo)) if items else None
        self.offset += len(echo) + len(response)
        zero = usage({}) if self.include_usage else None
        model = native.get("model", "")
        choice = _text_choice(echo + response, native.get("done_reason"), logprobs, self.index)
        out = [self._chunk(model, [choice], zero)]
        if native.get("done") and self.include_usage:
            out.append(self._chunk(model, [], usage(native)))
        return out


def unix_seconds(timestamp: str) -> int:
    """An RFC3339(Nano) time as unix seconds (the fraction is dropped)."""
    match = _RFC3339.match(timestamp)
    if match is None:
        return 0
    zone = "+00:00" if match["zone"] == "Z" else match["zone"]
    return int(datetime.fromisoformat(match["base"] + zone).timestamp())


def owner(name: str) -> str:
    """``owned_by``: the namespace of the model name."""
    try:
        return ModelName.parse(name).namespace
    except InvalidName:
        return ""


def model_object(name: str, modified_at: str) -> dict[str, Any]:
    """One ``model`` object; ``id`` is the name as given."""
    return {"id": name, "object": "model", "created": unix_seconds(modified_at), "owned_by": owner(name)}


def model_list(tags: dict[str, Any]) -> dict[str, Any]:
    """GET /api/tags as a ``list`` of models (``data`` is null when there are none, like Ollama)."""
    data = [model_object(m.get("model") or m["name"], m["modified_at"]) for m in tags.get("models") or []]
    return {"object": "list", "data": data or None}


def floats_to_base64(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64 encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(model: str, result: dict[str, Any], encoding_format: str | None) -> dict[str, Any]:
    """A native embed result as an embedding ``list``."""
    as_base64 = (encoding_format or "").lower() == "base64"
    data = [{"object": "embedding", "embedding": floats_to_base64(v) if as_base64 else v, "index": i}
            for i, v in enumerate(result["embeddings"])]
    count = result.get("prompt_eval_count", 0)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": count, "total_tokens": count}}
